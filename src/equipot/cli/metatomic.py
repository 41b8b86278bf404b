"""``equipot metatomic export MODEL -o model.pt``: a model for metatomic engines."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "metatomic",
        help="export a model in the metatomic format (i-PI, PLUMED, ASE's metatomic calculator)",
        description="Write MODEL as a metatomic TorchScript model that runs equipot's C++ "
        "inference engine (pip install 'equipot[metatomic]'). Load it in a Python process "
        "after `equipot.metatomic.load_extension()`.",
    )
    sub = p.add_subparsers(dest="metatomic_command", required=True)
    e = sub.add_parser("export", help="write MODEL as a metatomic model file")
    e.add_argument("model", help="model file (.eqp)")
    e.add_argument("-o", "--out", required=True, help="output metatomic model (.pt)")


def run(args: argparse.Namespace) -> int:
    from equipot.metatomic import export_metatomic

    out = export_metatomic(args.model, args.out)
    print(f"wrote {out}: load it after `equipot.metatomic.load_extension()`")
    return 0
