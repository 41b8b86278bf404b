"""``equipot relax``: relax a structure (and optionally its cell) with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from equipot.cli.options import reject_unused, with_defaults
from equipot.cli.sim_common import add_model_arguments, load_potential, read_structure


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "relax",
        help="relax atomic positions (and the cell)",
        description=(
            "Relax a structure with FIRE, L-BFGS or Newton's method (exact Hessian, trust "
            "region). Free molecules have rigid translations/rotations projected out. Units: "
            "eV, Å, GPa."
        ),
    )
    add_model_arguments(p)
    p.add_argument("structure", type=Path, help="structure file (any format ASE reads)")
    p.add_argument("--index", default="-1", help="frame of the structure file (default last)")
    p.add_argument("--method", choices=["fire", "lbfgs", "newton"], default="lbfgs")
    p.add_argument("--fmax", type=float, default=0.05, help="force threshold, eV/Å")
    p.add_argument("--cell", action="store_true", help="relax the cell too (3D periodic)")
    p.add_argument(
        "--pressure",
        type=float,
        default=None,
        help="external pressure with --cell, GPa (default 0)",
    )
    p.add_argument("--steps", type=int, default=1000, help="maximum iterations")
    p.add_argument(
        "--hessian-refresh",
        type=int,
        default=None,
        help="newton: exact Hessian every K accepted steps, BFGS-updated between (default 1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="relaxed structure (default: STRUCTURE stem + _relaxed.extxyz)",
    )
    p.add_argument("--trajectory", type=Path, default=None, help="every iteration, extxyz")
    return p


def run(args) -> int:
    from ase.io import write

    from equipot.progress import progress_bar
    from equipot.sim.relax import relax
    from equipot.sim.state import SimState
    from equipot.sim.trajectory import TrajectoryWriter

    if args.fmax <= 0:
        raise ValueError(f"--fmax must be positive, got {args.fmax}")
    newton = (args.method == "newton", "--method newton")
    reject_unused(
        args,
        {
            "pressure": (args.cell, "cell relaxations (--cell)"),
            "hessian_refresh": newton,
        },
    )
    options = {} if args.hessian_refresh is None else {"hessian_refresh": args.hessian_refresh}
    with_defaults(args, {"pressure": 0.0})
    potential = load_potential(args.model, args.dtype, skin=0.5)
    atoms = read_structure(args.structure, args.index)
    state = SimState.from_atoms(atoms, remove_com=False)
    writer = TrajectoryWriter(args.trajectory) if args.trajectory else None
    bar = progress_bar(args.steps, "relax", "it")

    def callback(s) -> None:
        bar.update(1)
        bar.set_postfix({"E": f"{s.history[-1][0]:.6f}eV", "fmax": f"{s.fmax:.2e}"})
        if writer:
            writer.write(s, s.iterations, 0.0)

    try:
        result = relax(
            state,
            potential,
            method=args.method,
            fmax=args.fmax,
            max_steps=args.steps,
            cell=args.cell,
            pressure=args.pressure,
            callback=callback,
            **options,
        )
    finally:
        bar.close()
        if writer:
            writer.close()
    out = args.out or args.structure.with_name(args.structure.stem + "_relaxed.extxyz")
    relaxed = result.atoms()
    relaxed.info.update(converged=result.converged, iterations=result.iterations)
    write(out, relaxed, format="extxyz")
    status = "converged" if result.converged else "NOT converged"
    print(
        f"equipot relax: {status} after {result.iterations} iterations "
        f"({result.evaluations} force evaluations, {result.hessians} Hessians): "
        f"E = {result.energy:.6f} eV, max force {result.fmax:.2e} eV/Å; wrote {out}"
    )
    return 0 if result.converged else 1
