"""Retrain one labelled set of an ``al_pool.py`` run with other recipe settings (issue 13).

    OMP_NUM_THREADS=1 EQUIPOT_THREADS=1 python benchmarks/uq/al_recipe_check.py \\
        benchmarks/out/uq/al_emt/seed-0 random/round-5 --forces-weight 100

The EMT copper learning curves of ``al_pool.py`` rose with the labels; this trains a round's
``train.extxyz`` again, from scratch, with the round's recipe except the settings given, and
prints the best epoch, the validation and the test force MAE.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from equipot.learn.rounds import test_errors, train_round


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("seed_dir", type=Path, help="an al_pool.py seed folder (holds test.extxyz)")
    p.add_argument("round", help="e.g. random/round-5")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--forces-weight", type=float, default=10.0)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    options = {
        "model": {
            "r_max": 4.5,
            "l_max": 1,
            "channels": args.channels,
            "radial_hidden": [32, 32],
            "correlation": 2,
        },
        "loss": {"energy_weight": 1.0, "forces_weight": args.forces_weight},
        "optim": {
            "lr": args.lr,
            "batch_size": args.batch_size,
            "max_epochs": args.epochs,
            "scheduler": "cosine",
            "min_lr": args.lr / 100,
        },
    }
    tag = f"lr{args.lr}_b{args.batch_size}_e{args.epochs}_fw{args.forces_weight}_c{args.channels}"
    out = args.out or args.seed_dir / "recipe_check" / args.round.replace("/", "_") / tag
    start = time.perf_counter()
    model = train_round(out, args.seed_dir / args.round / "train.extxyz", options, seed=0)
    results = json.loads((out / "results.json").read_text())
    test = test_errors(model, args.seed_dir / "test.extxyz")
    print(
        f"{args.round} {tag}: {time.perf_counter() - start:.0f} s, best epoch "
        f"{results['best_epoch']}/{results['epochs']}, validation force MAE "
        f"{1e3 * results['valid']['forces_mae']:.1f}, test {1e3 * test['forces_mae']:.1f} meV/Å"
    )


if __name__ == "__main__":
    main()
