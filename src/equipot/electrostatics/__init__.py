"""Electrostatics as pure, differentiable functions of positions, charges and the cell.

``coulomb_energy(atoms, charges, method="ewald" | "pme" | "direct" | "auto", ...)`` → eV;
point or Gaussian charges, Coulomb or screened (Yukawa) interactions (:mod:`.kernels`),
Ewald sums (:mod:`.ewald`, torch-pme), smooth PME (:mod:`.pme`), direct sums for open
systems (:mod:`.realspace`). Forces, stress and Hessians follow by autograd.
"""

from equipot.electrostatics.energy import (
    CoulombOptions,
    atomic_coulomb_energies,
    coulomb_energy,
    coulomb_potentials,
)
from equipot.electrostatics.fixed import FixedCharges
from equipot.electrostatics.kernels import COULOMB_CONSTANT, PairKernel

__all__ = [
    "COULOMB_CONSTANT",
    "CoulombOptions",
    "FixedCharges",
    "PairKernel",
    "atomic_coulomb_energies",
    "coulomb_energy",
    "coulomb_potentials",
]
