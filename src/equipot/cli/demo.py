"""``equipot demo [--out DIR] [--quick]``: train and test a copper model on EMT data."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="generate EMT copper data, train a small model, report its errors and properties",
        description="Needs no data: generates fcc Cu structures labelled with ASE's EMT "
        "(rattled and strained bulk, a vacancy, (111) and (100) slabs), trains a small model for a "
        "few minutes, evaluates it on held-out structures and compares its phonons, elastic "
        "constants, surface and vacancy energies with EMT's.",
    )
    p.add_argument("--out", default="equipot-demo", help="output directory (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (~30 s)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from equipot.demo import run_demo
    from equipot.demo.pipeline import report

    result = run_demo(args.out, quick=args.quick, seed=args.seed)
    print()
    print(report(result))
    return 0
