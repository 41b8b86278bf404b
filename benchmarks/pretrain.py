"""Pre-train the shipped model and package it into ``src/equipot/pretrained/``.

    flock /work/coord/cpu.lock python benchmarks/pretrain.py      # ≈ 25 min training

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
    molecules = sorted({f.info.get("molecule", "") for f in frames} - {""})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="examples/pretrained/organic_gfn2.yaml")
    parser.add_argument("--data", default="benchmarks/out/pretrain/organic_gfn2.xyz")
    parser.add_argument("--budget-min", type=float, default=None)
    parser.add_argument("--replay-count", type=int, default=800)
    parser.add_argument("--package-only", action="store_true")
    args = parser.parse_args()
    from equipot.train import load_config, train

    overrides = [f"data.train={args.data}"]
    if args.budget_min:
        overrides.append(f"optim.max_time_min={args.budget_min}")
    config = load_config(args.config, overrides)
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
