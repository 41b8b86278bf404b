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
    p.add_argument(
        "--ensemble",
        type=int,
        default=None,
        metavar="K",
        help="train a committee of K members (seeds seed..seed+K-1) → committee.eqp; "
        "rerunning the command continues an interrupted committee",
    )
    p.add_argument(
        "--bootstrap", action="store_true", help="committee: each member on a bootstrap resample"
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="committee: members trained at once (processes)"
    )


def run(args: argparse.Namespace) -> int:
    from equipot.train import load_config, train

    overrides = list(args.overrides) + ([f"output.dir={args.out}"] if args.out else [])
    config = load_config(args.config, overrides)
    if args.nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {args.nproc}")
    if args.ensemble is not None:
        return _committee(config, args)
    if args.bootstrap or args.jobs != 1:
        raise ValueError("--bootstrap and --jobs go with --ensemble K")
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


def _committee(config, args) -> int:
    from equipot.train.ensemble import train_committee

    if args.nproc != 1:
        raise ValueError("--ensemble trains members as separate processes: use --jobs, not --nproc")
    path, summary = train_committee(config, args.ensemble, bootstrap=args.bootstrap, jobs=args.jobs)
    for k, r in enumerate(summary["members"]):
        e = r.get("test", r["valid"])
        print(
            f"member {k}: energy MAE {1e3 * e['energy_mae']:.3f} meV, "
            f"force MAE {1e3 * e.get('forces_mae', float('nan')):.3f} meV/Å"
        )
    print(f"committee: {path}")
    return 0
