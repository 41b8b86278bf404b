"""--timestep auto: Lanczos on Hessian-vector products finds ω_max."""

from __future__ import annotations

import math

import numpy as np
import torch
from ase import Atoms, units

import equipot
from equipot.sim.analytic import Harmonic
from equipot.sim.potentials import ModelPotential
from equipot.sim.state import FS, SimState
from equipot.sim.timestep import (
    DEFAULT_STEPS_PER_PERIOD,
    auto_timestep,
    largest_eigenvalue,
    max_frequency,
)
from tests.conftest import random_cluster, small_model


def test_harmonic_system_with_known_omega_max():
    rng = np.random.default_rng(0)
    atoms = Atoms(
        ["H", "C", "O", "Cu", "H", "H", "C", "O", "N"], positions=rng.uniform(0, 8, (9, 3))
    )
    springs = rng.uniform(1.0, 20.0, 9)  # eV/Å²
    omega = np.sqrt(springs / atoms.get_masses())  # ω_i = √(k_i/m_i), 1/t
    pot = ModelPotential(Harmonic(torch.as_tensor(atoms.positions), torch.as_tensor(springs)))
    state = SimState.from_atoms(atoms)
    found = float(max_frequency(pot, state)[0])
    assert abs(found / omega.max() - 1.0) < 0.01
    dt = auto_timestep(pot, state)
    expected = 2 * math.pi / (DEFAULT_STEPS_PER_PERIOD * omega.max()) / FS
    assert abs(dt / expected - 1.0) < 0.01
    # the units: an H atom on a 20 eV/Å² spring vibrates with period 2π√(m/k) ≈ 14.6 fs
    assert 0.2 < dt < 2.0


def test_lanczos_matches_dense_mass_weighted_hessian_of_a_model():
    model = small_model()
    atoms = random_cluster(6, seed=5)
    hessian = equipot.hessian(model, atoms)
    inv_sqrt_m = np.repeat(atoms.get_masses() ** -0.5, 3)
    dense = np.linalg.eigvalsh(inv_sqrt_m[:, None] * hessian * inv_sqrt_m[None, :])[-1]
    pot = ModelPotential(model)
    omega = float(max_frequency(pot, SimState.from_atoms(atoms), tol=1e-12)[0])
    assert dense > 0 and abs(omega**2 / dense - 1.0) < 1e-6


def test_largest_eigenvalue_of_a_matrix():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 50))
    m = torch.as_tensor(a @ a.T)
    lam = largest_eigenvalue(lambda v: m @ v, 50, iterations=50)
    assert abs(lam - np.linalg.eigvalsh(a @ a.T)[-1]) < 1e-8 * lam
    assert units.fs == FS
