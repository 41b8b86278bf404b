"""Pre-train the shipped model and package it into ``src/equipot/pretrained/``.

    OMP_NUM_THREADS=1 python benchmarks/pretrain.py      # one core, ≈ 24 min training

Trains ``examples/pretrained/organic_gfn2.yaml`` on the GFN2-xTB data of
``benchmarks/pretrain_data.py``, then writes ``organic-gfn2.eqp`` (float32 weights), its
validation frames (``.valid.xyz``), a replay subset of its training frames (``.replay.xyz``)
and the model card (``.json``: recipe, level of theory, intended use, validation errors
measured on the packaged file and validation set, per config type and element).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

NAME = "organic-gfn2"
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "equipot" / "pretrained"


def package(run_dir: Path, data: Path, replay_count: int, seed: int = 0) -> dict:
    from ase.io import read, write

    from equipot.data.readers import DataSource
    from equipot.model.io import load_model
    from equipot.pretrained.recipe import EXCLUDED_G2, EXCLUDED_S22_WORDS, TEMPERATURES
    from equipot.train.groups import evaluate_groups

    split = json.loads((run_dir / "data.json").read_text())
    frames = read(data, ":")
    valid = [frames[k] for k in split["valid"]["frames"]]
    train_idx = np.asarray(split["train"]["frames"])
    rng = np.random.default_rng(seed)
    replay = [frames[k] for k in np.sort(rng.permutation(train_idx)[:replay_count])]
    write(PACKAGE / f"{NAME}.valid.xyz", valid, format="extxyz")
    write(PACKAGE / f"{NAME}.replay.xyz", replay, format="extxyz")
    model = load_model(run_dir / "best.eqp", dtype=torch.float32)
    model.save(PACKAGE / f"{NAME}.eqp", extra={"name": NAME}, head_name="gfn2-xtb")
    packaged = load_model(PACKAGE / f"{NAME}.eqp", dtype=torch.float64)
    source = DataSource(path=PACKAGE / f"{NAME}.valid.xyz")
    metrics, _, groups = evaluate_groups(packaged, source, ["config_type", "element", "source"])
    results = json.loads((run_dir / "results.json").read_text())
    molecules = {str(f.info.get("molecule", "")) for f in frames if len(f) > 1} - {""}
    card = {
        "name": NAME,
        "file": f"{NAME}.eqp",
        "level_of_theory": "GFN2-xTB (tblite 0.8), gas phase, neutral, closed shell; free "
        "atoms in their ground-state spin for E0",
        "elements": packaged.config.elements,
        "architecture": {
            k: getattr(packaged.config, k)
            for k in ("r_max", "l_max", "hidden_l_max", "channels", "num_layers", "correlation")
        },
        "data_recipe": {
            "molecules": "closed-shell H/C/N/O/F/S molecules of ASE's G2 set, S22 monomers "
            "and dimers (equipot.pretrained.recipe)",
            "excluded": {
                "g2": sorted(EXCLUDED_G2),
                "s22_containing": list(EXCLUDED_S22_WORDS),
                "reason": "every rMD17 molecule is absent, so rMD17 fine-tuning tests "
                "transfer to unseen molecules (aspirin, azobenzene, benzene, ethanol, "
                "malonaldehyde, naphthalene, paracetamol, salicylic acid, toluene, uracil)",
            },
            "sampling": f"xTB relaxation + Langevin MD at {list(TEMPERATURES)} K, 0.5 fs "
            "steps, 20 snapshots per temperature",
            "num_molecules": len(molecules),
            "num_frames": len(frames),
            "train_frames": len(train_idx),
            "valid_frames": len(valid),
        },
        "training": {
            "config": "examples/pretrained/organic_gfn2.yaml",
            "epochs": results["epochs"],
            "time_s": results["elapsed_s"],
        },
        "intended_use": "a starting point for fine-tuning on small organic molecules "
        "(H/C/N/O/F/S) at any level of theory (equipot train with finetune.from: "
        f"{NAME}); as a potential on its own only a rough GFN2-xTB surrogate. Not for "
        "charged or open-shell species, condensed phases, metals or reactive chemistry.",
        "validation_errors": metrics,
        "validation_groups": groups,
        "head": "gfn2-xtb",
        "replay_frames": len(replay),
    }
    (PACKAGE / f"{NAME}.json").write_text(json.dumps(card, indent=1))
    return card


def molecular_e0(data: Path, elements: list[str]) -> dict[str, float]:
    """Per-element E0 by least squares over the molecular (more-than-one-atom) frames.

    GFN2-xTB free atoms lie ≈ 5 eV/atom above the molecules (its atoms are not
    parametrised for dissociation), so with isolated-atom E0 the network would spend its
    budget learning that offset. These E0 start the training (refined with the rest,
    ``optim.learn_e0: true``); the free-atom frames stay in the data, so the model still
    learns the isolated-atom limit.
    """
    from ase.io import read

    frames = [f for f in read(data, ":") if len(f) > 1]
    counts = np.array([[f.get_chemical_symbols().count(e) for e in elements] for f in frames])
    energies = np.array([f.get_potential_energy() for f in frames])
    e0, *_ = np.linalg.lstsq(counts.astype(float), energies, rcond=None)
    return {e: float(v) for e, v in zip(elements, e0, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="examples/pretrained/organic_gfn2.yaml")
    parser.add_argument("--data", default="benchmarks/out/pretrain/organic_gfn2.xyz")
    parser.add_argument("--budget-min", type=float, default=None)
    parser.add_argument("--replay-count", type=int, default=800)
    parser.add_argument("--package-only", action="store_true")
    parser.add_argument("--out", default=None, help="run directory (default: the config's)")
    args = parser.parse_args()
    import yaml

    from equipot.train import load_config, train

    raw = yaml.safe_load(Path(args.config).read_text())
    raw["data"]["train"] = args.data
    if args.budget_min:
        raw["optim"]["max_time_min"] = args.budget_min
    if args.out:
        raw["output"]["dir"] = args.out
    raw["model"]["e0"] = molecular_e0(Path(args.data), raw["model"]["elements"])
    print(f"E0 (least squares over the molecules, refined in training): {raw['model']['e0']}")
    config = load_config(raw)
    start = time.perf_counter()
    if not args.package_only:
        train(config)
    card = package(config.output.dir, Path(args.data), args.replay_count)
    v = card["validation_errors"]
    print(
        f"packaged {NAME}: validation E {1e3 * v['energy_per_atom_mae']:.2f} meV/atom, "
        f"F {1e3 * v['forces_mae']:.1f} meV/Å ({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
