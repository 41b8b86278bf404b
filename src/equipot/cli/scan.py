"""``equipot scan``: a torsion or bond-stretch scan with a model, flagged for holes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scan",
        help="torsion / stretch scan with hole and erratic-force flags",
        description=(
            "Scan one internal coordinate of a structure with a model, rigid or relaxed (all "
            "other coordinates relaxed at each point, continuing from the previous one), and "
            "flag a scan whose energy falls far below its start (a hole) or whose force along "
            "the coordinate changes sign erratically. Writes JSON and a PNG plot. Units: eV, "
            "Å, degrees. Atom indices count from 0."
        ),
    )
    p.add_argument("model", type=Path, help="equipot model file (.eqp)")
    p.add_argument("structure", type=Path, help="structure file (any format ASE reads)")
    p.add_argument("--index", default="-1", help="frame of the structure file (default last)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--torsion", type=int, nargs=4, metavar=("I", "J", "K", "L"))
    which.add_argument("--stretch", type=int, nargs=2, metavar=("I", "J"))
    p.add_argument("--step", type=float, default=None, help="torsion step, degrees (10)")
    p.add_argument("--span", type=float, default=None, help="torsion range, degrees (360)")
    p.add_argument("--to", type=float, default=None, help="stretch: final distance, Å")
    p.add_argument(
        "--from",
        dest="start",
        type=float,
        default=None,
        help="stretch: first distance, Å (default 0.8 × the current one)",
    )
    p.add_argument("--points", type=int, default=None, help="stretch: number of points (30)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--relaxed",
        dest="relax",
        action="store_true",
        default=None,
        help="relax everything else at each point (default for torsions)",
    )
    mode.add_argument(
        "--rigid",
        dest="relax",
        action="store_false",
        help="move the fragment only (default for stretches)",
    )
    p.add_argument("--fmax", type=float, default=None, help="relaxed scans: threshold, eV/Å (0.02)")
    p.add_argument("--steps", type=int, default=None, help="relaxed scans: steps per point (300)")
    p.add_argument(
        "--hole-threshold",
        type=float,
        default=0.25,
        help="flag energies this far below the start, eV (0.25)",
    )
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--out", type=Path, default=Path("scan.json"), help="JSON output")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: --out with .png)")
    p.add_argument("--trajectory", type=Path, default=None, help="geometries, extxyz")
    return p


def run(args) -> int:
    from ase.io import write

    from equipot.calculator import EquipotCalculator
    from equipot.cli.options import reject_unused, with_defaults
    from equipot.cli.sim_common import read_structure
    from equipot.progress import progress_bar
    from equipot.scan import Coordinate, check_scan, run_scan, torsion_values
    from equipot.scan.report import plot_scan, scan_record, write_json

    if not args.model.exists():
        raise FileNotFoundError(f"model file {args.model} does not exist")
    torsion = args.torsion is not None
    relaxed = args.relax if args.relax is not None else torsion
    reject_unused(
        args,
        {
            "step": (torsion, "torsion scans (--torsion)"),
            "span": (torsion, "torsion scans (--torsion)"),
            "to": (not torsion, "stretch scans (--stretch)"),
            "start": (not torsion, "stretch scans (--stretch)", "--from"),
            "points": (not torsion, "stretch scans (--stretch)"),
            "fmax": (relaxed, "relaxed scans (--relaxed; the default for torsions)"),
            "steps": (relaxed, "relaxed scans (--relaxed; the default for torsions)"),
        },
    )
    with_defaults(args, {"step": 10.0, "span": 360.0, "points": 30, "fmax": 0.02, "steps": 300})
    atoms = read_structure(args.structure, args.index)
    if args.torsion is not None:
        coordinate = Coordinate.torsion(atoms, args.torsion)
        values = torsion_values(coordinate.value(atoms), args.step, args.span)
        relax = True if args.relax is None else args.relax
    else:
        coordinate = Coordinate.stretch(atoms, args.stretch)
        d0 = coordinate.value(atoms)
        start = 0.8 * d0 if args.start is None else args.start
        stop = max(2.5 * d0, d0 + 3.0) if args.to is None else args.to
        if start <= 0 or stop <= start or args.points < 2:
            raise ValueError(
                f"stretch needs 0 < --from < --to and ≥ 2 points, got {start}, "
                f"{stop}, {args.points}"
            )
        values = np.linspace(start, stop, args.points)
        relax = False if args.relax is None else args.relax
    calc = EquipotCalculator(args.model, dtype=args.dtype)
    with progress_bar(len(values), "scan", "pt") as bar:

        def progress(done: int, energy: float) -> None:
            bar.update(1)
            bar.set_postfix({"E": f"{energy:.4f}eV"})

        scan = run_scan(
            atoms,
            calc,
            coordinate,
            values,
            relax=relax,
            fmax=args.fmax,
            steps=args.steps,
            callback=progress,
        )
    check = check_scan(
        scan.values,
        scan.energies,
        scan.generalized_forces,
        hole_threshold=args.hole_threshold,
        unit=coordinate.unit,
    )
    write_json(args.out, scan_record(scan, check))
    plot = args.plot or args.out.with_suffix(".png")
    plot_scan(plot, scan, check, title=args.structure.stem)
    if args.trajectory:
        write(args.trajectory, scan.frames, format="extxyz")
    span = float(scan.relative.max() - scan.relative.min())
    print(
        f"{coordinate.label}: {len(values)} points, {'relaxed' if relax else 'rigid'}; "
        f"energy range {span:.4f} eV; lowest {scan.relative.min():+.4f} eV vs the start"
    )
    if scan.converged is not None and relax and not scan.converged.all():
        print(f"warning: {int((~scan.converged).sum())} point(s) did not reach fmax {args.fmax}")
    for message in check.messages:
        print(f"FLAG {message}")
    if check.ok:
        print("no hole, no erratic forces")
    print(f"wrote {args.out} and {plot}")
    return 0
