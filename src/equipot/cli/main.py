"""``equipot`` command line: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand → module under equipot.cli (imported lazily so `equipot --help` is fast)
SUBCOMMANDS: dict[str, str] = {
    # properties
    "vibrations": "vibrations",
    "phonons": "phonons",
    "elastic": "elastic",
    "surface": "surface",
    "defects": "defects",
    "dielectric": "dielectric",
    "spectra": "spectra",
    # simulation
    "md": "md",
    "relax": "relax",
    "neb": "neb",
    "scan": "scan",
    # training
    "train": "train",
    "evaluate": "evaluate",
    # uncertainty
    "calibrate": "calibrate",
    "learn": "learn",
    "demo": "demo",
    # transfer
    "label": "label",
    "hull": "hull",
    # other engines
    "lammps": "lammps",
    "metatomic": "metatomic",
}


def build_parser() -> argparse.ArgumentParser:
    from equipot.version import __version__

    parser = argparse.ArgumentParser(
        prog="equipot",
        description="E(3)-equivariant neural-network interatomic potentials.",
    )
    parser.add_argument("--version", action="version", version=f"equipot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        importlib.import_module(f"equipot.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"equipot.cli.{SUBCOMMANDS[args.command]}")
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # user errors: a clear message, no traceback
        print(f"equipot {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
