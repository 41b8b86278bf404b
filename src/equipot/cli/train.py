"""``equipot train CONFIG.yaml [--set key=value ...] [--resume] [--nproc N]``."""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model. The run directory (output.dir) receives the resolved "
        "config, a per-epoch CSV log, a learning-curve PNG, checkpoint.pt (every epoch), "
        "best.eqp / final.eqp and results.json.",
    )
    p.add_argument("config", help="training config (YAML); see examples/")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.005 (repeatable)",
    )
    p.add_argument("--out", help="run directory (same as --set output.dir=...)")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.pt")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes (gloo)")


def run(args: argparse.Namespace) -> int:
    from equipot.train import load_config, train

    overrides = list(args.overrides) + ([f"output.dir={args.out}"] if args.out else [])
    config = load_config(args.config, overrides)
    if args.nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {args.nproc}")
    result = train(config, resume=args.resume, nproc=args.nproc)
    if os.environ.get("RANK", "0") != "0":  # launched by torchrun: rank 0 reports
        return 0
    r = result.results
    print(f"\ntrained {r['epochs']} epochs in {r['elapsed_s']:.0f} s; best epoch {r['best_epoch']}")
    for split in ("valid", "test"):
        if split in r:
            e = r[split]
            print(
                f"{split:5s}: energy MAE {1e3 * e['energy_mae']:.3f} meV "
                f"({1e3 * e['energy_per_atom_mae']:.3f} meV/atom), "
                f"force MAE {1e3 * e.get('forces_mae', float('nan')):.3f} meV/Å"
            )
    print(f"best model:  {result.best_model}")
    print(f"final model: {result.final_model}")
    print(f"log:         {result.run_dir / 'log.csv'}, {result.run_dir / 'learning_curve.png'}")
    return 0
