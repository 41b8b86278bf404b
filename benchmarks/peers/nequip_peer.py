"""NequIP (PyPI ``nequip``, its own venv) as a second peer: a same-size model, trained or timed.

NequIP ≥ 0.7 is configured by Hydra YAML and trained by Lightning (``nequip-train -cp DIR -cn
NAME``). :func:`config` writes the benchmarks' model size in NequIP's terms: hidden features
64×0e + 64×1o after the first of 2 interaction layers (NequIP requires the last layer to output
scalars only: 64×0e), edge spherical harmonics to l = 3, r_max 5 Å,
8 Bessel functions, a 3-layer radial MLP of width 64, batch 5, Adam (AMSGrad) at 0.01, EMA
(NequIP's ``EMALightningModule``), energy + force loss. NequIP has no many-body (correlation)
product, so "same size" is the same feature irreps, depth and radial network, not the same
operation count.

Seconds per epoch come from :class:`EpochClock` (``nequip_epoch_clock.EpochClock``, put on
the child's ``PYTHONPATH``), which prints a wall-clock stamp at the end of every training
epoch; with validation every epoch the spacing includes NequIP's validation, as MACE's does.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import yaml

NEQUIP_BIN = Path(os.environ.get("NEQUIP_BIN", "/work/peers/nequip/bin"))

CLOCK = """
import json, time
from lightning.pytorch.callbacks import Callback

class EpochClock(Callback):
    def on_train_epoch_end(self, trainer, module):
        print("EPOCH_CLOCK " + json.dumps({"epoch": trainer.current_epoch,
                                           "time": time.perf_counter()}), flush=True)
"""


def config(paths: dict, dtype: str, epochs: int, species: list[str]) -> dict:
    """A NequIP training config of the benchmarks' model size (see the module docstring)."""
    keys = {"REF_energy": "total_energy", "REF_forces": "forces"}
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": 5}
    return {
        "run": ["train"],
        "seed": 1,
        "cutoff_radius": 5.0,
        "model_type_names": species,
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": 1,
            "train_file_path": str(paths["train"]),
            "val_file_path": str(paths["valid"]),
            "key_mapping": keys,
            "transforms": [
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": species,
                    "chemical_species_to_atom_type_map": {s: s for s in species},
                },
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": 5.0},
            ],
            "train_dataloader": loader | {"shuffle": True},
            "val_dataloader": loader | {"batch_size": 10},
            "stats_manager": {
                "_target_": "nequip.data.CommonDataStatisticsManager",
                "type_names": species,
                "dataloader_kwargs": {"batch_size": 10},
            },
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "max_epochs": epochs,
            "check_val_every_n_epoch": 1,
            "enable_progress_bar": False,
            "logger": False,
            "enable_checkpointing": False,
            "callbacks": [{"_target_": "nequip_epoch_clock.EpochClock"}],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": 0.99,
            "loss": {
                "_target_": "nequip.train.EnergyForceLoss",
                "per_atom_energy": True,
                "coeffs": {"total_energy": 1.0, "forces": 100.0},
            },
            "val_metrics": {
                "_target_": "nequip.train.EnergyForceMetrics",
                "coeffs": {"total_energy_mae": 1.0, "forces_mae": 1.0},
            },
            "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.01, "amsgrad": True},
            "model": {
                "_target_": "nequip.model.FullNequIPGNNModel",
                "seed": 1,
                "model_dtype": dtype,
                "type_names": species,
                "r_max": 5.0,
                "num_bessels": 8,
                "irreps_edge_sh": "1x0e+1x1o+1x2e+1x3o",
                "feature_irreps_hidden": ["64x0e+64x1o", "64x0e"],  # NequIP: last layer scalars
                "radial_mlp_depth": [3, 3],
                "radial_mlp_width": [64, 64],
                "type_embed_num_features": 64,
                "readout_mlp_hidden_layers_depth": 1,
                "readout_mlp_hidden_layers_width": 16,
                "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
                "per_type_energy_scales": "${training_data_stats:forces_rms}",
            },
        },
        "global_options": {"allow_tf32": False},
    }


def run_nequip(
    paths: dict, dtype: str, threads: int, epochs: int, root: Path, species: list[str]
) -> dict:
    """Train NequIP for ``epochs`` epochs; seconds per epoch from the epoch-end stamps."""
    work = root / f"nequip_{dtype}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "nequip_epoch_clock.py").write_text(CLOCK)
    (work / "bench.yaml").write_text(yaml.safe_dump(config(paths, dtype, epochs, species)))
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONPATH=str(work),
        HYDRA_FULL_ERROR="1",
    )
    cmd = [
        str(NEQUIP_BIN / "nequip-train"),
        "-cp",
        str(work),
        "-cn",
        "bench",
        f"hydra.run.dir={work / 'run'}",
    ]
    with open(work / "stdout.log", "w") as log:
        done = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    text = (work / "stdout.log").read_text()
    if done.returncode:
        raise RuntimeError(f"nequip-train failed; see {work / 'stdout.log'}:\n{text[-3000:]}")
    stamps = [
        json.loads(line.split("EPOCH_CLOCK ", 1)[1])["time"]
        for line in text.splitlines()
        if "EPOCH_CLOCK " in line
    ]
    if len(stamps) < 2:
        raise RuntimeError(f"NequIP logged {len(stamps)} epochs; see {work / 'stdout.log'}")
    spacing = np.diff(stamps)
    return {"epoch_s": float(np.min(spacing)), "epoch_s_all": spacing.tolist()}
