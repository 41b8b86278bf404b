"""Material properties from the energy function: vibrations, phonons, elasticity, surfaces, defects.

Every routine takes a ``source``: an equipot model or model file (exact autograd Hessians and
stress) or any ASE calculator (finite differences where no autograd Hessian exists).
"""

from equipot.properties.defects import vacancy_formation_energy, vacancy_migration_barrier
from equipot.properties.elastic import (
    born_stability,
    elastic_constants,
    vrh_moduli,
)
from equipot.properties.hessians import force_constants, mass_weighted
from equipot.properties.phonons import Phonons, compute_phonons
from equipot.properties.relax import relax
from equipot.properties.report import copper_property_table
from equipot.properties.surfaces import surface_energy, surface_energy_convergence
from equipot.properties.vibrations import harmonic_thermo, vibrational_modes, write_modes

__all__ = [
    "Phonons",
    "born_stability",
    "compute_phonons",
    "copper_property_table",
    "elastic_constants",
    "force_constants",
    "harmonic_thermo",
    "mass_weighted",
    "relax",
    "surface_energy",
    "surface_energy_convergence",
    "vacancy_formation_energy",
    "vacancy_migration_barrier",
    "vibrational_modes",
    "vrh_moduli",
    "write_modes",
]
