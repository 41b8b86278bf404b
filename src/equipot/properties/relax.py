"""Relaxations inside property workflows, with ASE's optimisers (work for any calculator)."""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE

from equipot.properties.hessians import Source, with_calculator

OPTIMIZERS = {"BFGS": BFGS, "FIRE": FIRE}


def relax(
    atoms: Atoms,
    source: Source,
    *,
    fmax: float = 1e-3,
    steps: int = 500,
    cell: bool = False,
    optimizer: str = "BFGS",
    hydrostatic: bool = False,
) -> Atoms:
    """A relaxed copy of ``atoms`` (positions; and the cell with ``cell=True``).

    ``fmax`` is in eV/Å; with the cell, FrechetCellFilter's generalised forces include the
    stress times the volume. A relaxation that does not converge within ``steps`` warns.
    A structure with one atom per periodic cell has no positions to relax.
    """
    atoms = with_calculator(atoms, source)
    if not cell and len(atoms) == 1 and atoms.pbc.all():
        return atoms
    target = FrechetCellFilter(atoms, hydrostatic_strain=hydrostatic) if cell else atoms
    opt = OPTIMIZERS[optimizer](target, logfile=None)
    converged = opt.run(fmax=fmax, steps=steps)
    if not converged:
        residual = float(np.linalg.norm(target.get_forces(), axis=1).max())
        warnings.warn(
            f"relaxation of {atoms.get_chemical_formula()} did not reach fmax={fmax} eV/Å in "
            f"{steps} steps (max force {residual:.2e})",
            stacklevel=2,
        )
    return atoms
