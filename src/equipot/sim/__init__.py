"""Simulation: a batched state, potentials, integrators, relaxations and reaction paths.

Integrators are modules with ``init(state, potential, ...)`` and ``step(state, potential,
...)`` (user units: fs, K, GPa): :mod:`~equipot.sim.nve` (velocity Verlet),
:mod:`~equipot.sim.langevin` (BAOAB), :mod:`~equipot.sim.nose_hoover` (chains),
:mod:`~equipot.sim.npt` (stochastic cell rescaling) and :mod:`~equipot.sim.pimd` (ring
polymers, PILE). :func:`run` drives them with output; :func:`relax` and :func:`neb` find
minima and minimum-energy paths.
"""

from equipot.sim import langevin, nose_hoover, npt, nve, pimd
from equipot.sim.neb import NEBResult, neb
from equipot.sim.potentials import (
    ASEPotential,
    ModelPotential,
    Potential,
    PotentialOutput,
    as_potential,
    evaluate,
)
from equipot.sim.relax import RelaxResult, relax
from equipot.sim.runner import MDResult, run
from equipot.sim.state import SimState
from equipot.sim.timestep import auto_timestep

__all__ = [
    "ASEPotential",
    "MDResult",
    "ModelPotential",
    "NEBResult",
    "Potential",
    "PotentialOutput",
    "RelaxResult",
    "SimState",
    "as_potential",
    "auto_timestep",
    "evaluate",
    "langevin",
    "neb",
    "nose_hoover",
    "npt",
    "nve",
    "pimd",
    "relax",
    "run",
]
