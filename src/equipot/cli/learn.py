"""``equipot learn CONFIG.yaml``: active learning with a reference calculator."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "learn",
        help="active learning: train → explore (MD) → select by uncertainty → label → retrain",
        description="Rounds of: train a model (or committee) on the labelled frames, explore "
        "with batched MD replicas (uncertainty alarms on), select frames by uncertainty with "
        "diversity, label them with the reference calculator named in the config (in "
        "parallel processes; every frame is saved at once), until the target test force "
        "error, the label budget or the round limit. Rerun the same command to resume a "
        "killed loop: nothing already computed is computed again. See examples/learn/.",
    )
    p.add_argument("config", help="learn config (YAML)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set stop.max_labels=100 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from equipot.learn.config import load_learn_config
    from equipot.learn.loop import LearnLoop

    config = load_learn_config(args.config, args.overrides)
    summary = LearnLoop(config, progress=not args.no_progress).run()
    print(
        f"equipot learn: {summary['rounds']} round(s), {summary.get('labels', '?')} labels "
        f"({summary['reason']}); model {summary.get('model', '?')}; learning curve "
        f"{config.out / 'learning_curve.png'}"
    )
    return 0
