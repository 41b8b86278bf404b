"""``equipot metatomic export MODEL -o model.pt``: a model for metatomic engines."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "metatomic",
        help="export a model in the metatomic format (i-PI, PLUMED, ASE's metatomic calculator)",
        description="Write MODEL as a metatomic TorchScript model that runs equipot's C++ "
        "inference engine (pip install 'equipot[metatomic]'), and the engine's TorchScript "
        "library into <out>-extensions/ beside it: load the model with that directory as "
        "metatomic's extensions directory (no equipot needed there).",
    )
    sub = p.add_subparsers(dest="metatomic_command", required=True)
    e = sub.add_parser("export", help="write MODEL as a metatomic model file")
    e.add_argument("model", help="model file (.eqp)")
    e.add_argument("-o", "--out", required=True, help="output metatomic model (.pt)")


def run(args: argparse.Namespace) -> int:
    from equipot.metatomic import export_metatomic, extensions_directory

    out = export_metatomic(args.model, args.out)
    print(f"wrote {out} and its engine library in {extensions_directory(out)}/ (metatomic's")
    print("extensions directory: `MetatomicCalculator(model, extensions_directory=...)` in")
    print("Python, the engine's extensions option elsewhere)")
    return 0
