"""``equipot train CONFIG.yaml [--set key=value ...] [--resume | --extend] [--nproc N]``."""

from __future__ import annotations

import argparse
import os
import sys


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
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output.dir from its checkpoint.pt, exactly where it stopped "
        "(same config; starts the run if it has no checkpoint yet)",
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="resume a finished or interrupted run with a larger budget: give the new total "
        "optim.max_epochs / optim.max_time_min with --set; the schedule is stretched over the "
        "new plan",
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume although data, split, model, loss or optimiser settings changed",
    )
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
    from equipot.train.guard import TrainingInterrupted

    overrides = list(args.overrides) + ([f"output.dir={args.out}"] if args.out else [])
    config = load_config(args.config, overrides)
    if args.nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--nproc starts processes itself: leave it out under torchrun")
    if args.ensemble is not None:
        if args.extend or args.allow_config_change:
            raise ValueError(
                "--extend / --allow-config-change go with a single run, not --ensemble"
            )
        return _committee(config, args)
    if args.bootstrap or args.jobs != 1:
        raise ValueError("--bootstrap and --jobs go with --ensemble K")
    try:
        result = train(
            config,
            resume=args.resume,
            extend=args.extend,
            allow_config_change=args.allow_config_change,
            nproc=args.nproc,
        )
    except TrainingInterrupted as exc:
        print(f"equipot train: {exc}", file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") != "0":  # launched by torchrun: rank 0 reports
        return 0
    r = result.results
    print(f"\ntrained {r['epochs']} epochs in {r['elapsed_s']:.0f} s; best epoch {r['best_epoch']}")
    for split in ("valid", "test"):
        if split in r:
            e = r[split]
            forces = (
                f"force MAE {1e3 * e['forces_mae']:.3f} meV/Å"
                if "forces_mae" in e
                else f"no forces in the {split} set"
            )
            print(
                f"{split:5s}: energy MAE {1e3 * e['energy_mae']:.3f} meV "
                f"({1e3 * e['energy_per_atom_mae']:.3f} meV/atom), {forces}"
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
