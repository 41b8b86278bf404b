"""Rigid and relaxed scans of one internal coordinate with any ASE calculator.

Rigid: the fragment is moved to each value and nothing else changes. Relaxed: at each value the
coordinate is held fixed (``ase.constraints.FixInternals``) and every other degree of freedom
is relaxed, starting from the previous point's relaxed geometry (the scan follows one valley).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.constraints import FixInternals
from ase.optimize import BFGS

from equipot.scan.coordinates import Coordinate


@dataclass
class Scan:
    coordinate: Coordinate
    relaxed: bool
    values: np.ndarray  # (P,) degrees or Å
    energies: np.ndarray  # (P,) eV
    generalized_forces: np.ndarray  # (P,) −dE/dq, eV/deg or eV/Å
    frames: list[Atoms] = field(repr=False)  # geometries (with forces in arrays["forces"])
    converged: np.ndarray | None = None  # (P,) relaxed points that reached fmax

    @property
    def relative(self) -> np.ndarray:
        """Energies relative to the first point (the starting structure), eV."""
        return self.energies - self.energies[0]


def torsion_values(start: float, step: float = 10.0, span: float = 360.0) -> np.ndarray:
    """start, start + step, …, start + span (degrees; the last point closes a full turn)."""
    if step <= 0 or span <= 0:
        raise ValueError(f"torsion step and span must be positive, got {step}, {span}")
    count = round(span / step)
    return start + step * np.arange(count + 1)


def run_scan(
    atoms: Atoms,
    calculator,
    coordinate: Coordinate,
    values: Sequence[float],
    *,
    relax: bool = False,
    fmax: float = 0.02,
    steps: int = 300,
    callback: Callable[[int, float], None] | None = None,
) -> Scan:
    """Energies and forces of ``atoms`` with ``coordinate`` set to each of ``values``."""
    if fmax <= 0:
        raise ValueError(f"fmax must be positive, got {fmax}")
    current = atoms.copy()
    current.constraints = []
    energies, gforces, frames, converged = [], [], [], []
    for value in values:
        coordinate.set(current, float(value))
        current.calc = calculator
        ok = True
        if relax:
            current.set_constraint(_constraint(coordinate, current))
            try:
                ok = bool(BFGS(current, logfile=None).run(fmax=fmax, steps=steps))
            except (ValueError, ZeroDivisionError):
                # FixInternals could not project a step (huge forces far outside a model's
                # data) or met a linear angle: the point keeps the last geometry that held
                # the constraint and is reported unconverged instead of ending the scan
                ok = False
            finally:
                current.set_constraint()
        energy = float(current.get_potential_energy())
        forces = np.array(current.get_forces(apply_constraint=False))
        frame = current.copy()
        frame.calc = None
        frame.arrays["forces"] = forces
        frame.info["energy"] = energy
        frames.append(frame)
        energies.append(energy)
        gforces.append(coordinate.generalized_force(current, forces))
        converged.append(ok)
        if callback is not None:
            callback(len(energies), energy)
    return Scan(
        coordinate=coordinate,
        relaxed=relax,
        values=np.asarray(values, dtype=float),
        energies=np.array(energies),
        generalized_forces=np.array(gforces),
        frames=frames,
        converged=np.array(converged),
    )


def _constraint(coordinate: Coordinate, atoms: Atoms) -> FixInternals:
    indices = list(coordinate.indices)
    if coordinate.kind == "torsion":
        return FixInternals(dihedrals_deg=[[atoms.get_dihedral(*indices), indices]])
    return FixInternals(bonds=[[atoms.get_distance(*indices), indices]])
