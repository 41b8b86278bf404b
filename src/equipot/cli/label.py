"""``equipot label DATA --calculator NAME --out OUT [--delta]``: (re)label structures with a
reference calculator — teacher labels for distillation, or reference − baseline for Δ-models."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "label",
        help="label structures with a reference calculator (distillation, Δ-learning)",
        description="Compute energies, forces (and stresses of 3D-periodic cells) of every "
        "structure in DATA with a named calculator (emt, gfn2-xtb, gfn1-xtb, sw-si, "
        "kumagai-si, tersoff-ge, lj:sigma:epsilon) and write them to OUT (extxyz). With "
        "--delta, DATA's own labels minus the calculator's are written instead: the "
        "training data of a Δ-model (use it with equipot.transfer.DeltaCalculator).",
    )
    p.add_argument("data", help="structures (any ASE-readable file; extxyz keeps info keys)")
    p.add_argument("--calculator", required=True, help="reference calculator name")
    p.add_argument("--out", required=True, help="output extxyz file")
    p.add_argument("--delta", action="store_true", help="write reference − calculator")
    p.add_argument("--config-type", help="set this config_type on every frame")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ase.io import read, write

    from equipot.progress import progress_iter
    from equipot.transfer.delta import delta_labels
    from equipot.transfer.teachers import label

    path = Path(args.data)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    frames = read(path, ":")
    frames = progress_iter(frames, args.calculator, leave=False)  # iterated once, lazily
    if args.delta:
        out = delta_labels(frames, args.calculator)
        if args.config_type:
            for atoms in out:
                atoms.info["config_type"] = args.config_type
    else:
        out = label(frames, args.calculator, config_type=args.config_type)
    write(args.out, out, format="extxyz")
    print(f"wrote {len(out)} frames to {args.out}")
    return 0
