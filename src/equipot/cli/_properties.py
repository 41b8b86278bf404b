"""Shared arguments and output helpers of the property subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CALCULATORS = ("emt",)


def add_source_arguments(parser: argparse.ArgumentParser, structure: str = "STRUCTURE") -> None:
    """``MODEL STRUCTURE`` positionals (just STRUCTURE with ``--calculator``), ``--dtype``,
    ``--index`` and ``--out``."""
    parser.add_argument(
        "model", metavar="MODEL", help="an equipot model file (.eqp); with --calculator, left out"
    )
    parser.add_argument(
        "structure", metavar=structure, nargs="?", help="a structure file ASE can read"
    )
    parser.add_argument(
        "--calculator",
        choices=CALCULATORS,
        help="use an ASE calculator instead of a model (emt: ASE's EMT, for checks and demos)",
    )
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "float64"], help="model precision (float64)"
    )
    parser.add_argument("--index", default="-1", help="frame of STRUCTURE to use (ASE index)")
    parser.add_argument("--out", type=Path, help="output folder (default: STRUCTURE-COMMAND/)")


def load_inputs(args: argparse.Namespace):
    """(source, atoms, output folder) from the parsed arguments; ValueError on bad input."""
    from ase.io import read

    from equipot.cli.options import reject_unused, with_defaults

    reject_unused(args, {"dtype": (not args.calculator, "models (not --calculator)")})
    with_defaults(args, {"dtype": "float64"})
    inputs = [path for path in (args.model, args.structure) if path is not None]
    expected = 1 if args.calculator else 2
    if len(inputs) != expected:
        usage = "one structure file with --calculator" if args.calculator else "MODEL STRUCTURE"
        raise ValueError(f"expected {usage}, got {len(inputs)} path(s): {inputs}")
    structure = Path(inputs[-1])
    if not structure.exists():
        raise FileNotFoundError(f"no such structure file: {structure}")
    try:
        atoms = read(structure, index=args.index)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise ValueError(f"{structure}: cannot read a structure ({exc})") from exc
    if args.calculator == "emt":
        from ase.calculators.emt import EMT

        source = EMT()
    else:
        model_path = Path(inputs[0])
        if not model_path.exists():
            raise FileNotFoundError(f"no such model file: {model_path}")
        from equipot.calculator import EquipotCalculator

        source = EquipotCalculator(model_path, dtype=args.dtype)
    out = args.out or Path(f"{structure.stem}-{args.command}")
    out.mkdir(parents=True, exist_ok=True)
    return source, atoms, out


def to_jsonable(value):
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(to_jsonable(data), indent=1) + "\n")
    return path


def temperatures(spec: str) -> np.ndarray:
    """'0:1000:50' (start:stop:step, inclusive) or '300' or '100,200,300' → array in K."""
    try:
        if ":" in spec:
            start, stop, step = (float(v) for v in spec.split(":"))
            return np.arange(start, stop + 0.5 * step, step)
        return np.array([float(v) for v in spec.split(",")])
    except ValueError as exc:
        raise ValueError(f"bad temperatures {spec!r}: use start:stop:step or a,b,c") from exc


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
