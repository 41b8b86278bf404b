"""Path-integral MD on a harmonic oscillator: exact quantum energy with enough beads, the
classical energy with one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms

from equipot.sim import pimd
from equipot.sim.analytic import Harmonic
from equipot.sim.potentials import ModelPotential
from equipot.sim.state import KB, SimState
from tests.sim_helpers import block_mean

HBAR_OMEGA = 0.1  # eV (≈ 807 cm⁻¹)
MASS = 1.008  # H
N_ATOMS = 16


@pytest.mark.parametrize("n_beads", [1, 2, 5, 8])
def test_normal_modes_are_orthogonal_with_ring_frequencies(n_beads):
    c = pimd.normal_mode_matrix(n_beads)
    assert torch.allclose(c.T @ c, torch.eye(n_beads, dtype=torch.float64), atol=1e-14)
    # C diagonalises the ring's spring matrix with eigenvalues (ω_k/ω_P)²
    ring = 2 * torch.eye(n_beads, dtype=torch.float64)
    ring -= torch.roll(torch.eye(n_beads, dtype=torch.float64), 1, 0)
    ring -= torch.roll(torch.eye(n_beads, dtype=torch.float64), -1, 0)
    if n_beads == 1:
        ring = torch.zeros(1, 1, dtype=torch.float64)
    omega_p = n_beads * KB * 300.0 / pimd.HBAR
    expected = (pimd.mode_frequencies(n_beads, 300.0) / omega_p) ** 2
    assert torch.allclose(c.T @ ring @ c, torch.diag(expected), atol=1e-12)


def _oscillators(n_beads: int, temperature: float, steps: int, seed: int = 0):
    omega = HBAR_OMEGA / pimd.HBAR
    positions = np.array([[3.0 * i, 0.0, 0.0] for i in range(N_ATOMS)])
    pot = ModelPotential(Harmonic(torch.as_tensor(positions), MASS * omega**2))
    atoms = Atoms(f"H{N_ATOMS}", positions=positions)
    state = pimd.init(
        SimState.from_atoms(atoms, remove_com=False),
        pot,
        n_beads=n_beads,
        temperature=temperature,
        seed=seed,
    )
    energies = []
    for i in range(steps):
        state = pimd.step(state, pot, dt=0.5, temperature=temperature, tau=20.0)
        if i >= 400:
            energies.append(pimd.estimators(state, temperature)["total"].item())
    return np.array(energies), state


def test_pimd_harmonic_oscillator_quantum_energy():
    temperature = 290.0  # βħω ≈ 4: strongly quantum
    energies, state = _oscillators(32, temperature, 3400)
    beta = 1.0 / (KB * temperature)
    exact = 3 * N_ATOMS * 0.5 * HBAR_OMEGA / math.tanh(0.5 * beta * HBAR_OMEGA)
    classical = 3 * N_ATOMS / beta
    mean, se = block_mean(energies)
    assert abs(mean / exact - 1.0) < 0.02 and se < 0.01 * exact
    assert exact > 2 * classical  # so the check above can tell quantum from classical
    # the beads really spread: the ring polymer's radius of gyration is non-zero
    beads = state.positions.view(32, N_ATOMS, 3)
    assert (beads - beads.mean(0)).norm(dim=2).mean() > 0.03


def test_pimd_one_bead_is_classical():
    temperature = 290.0
    energies, _ = _oscillators(1, temperature, 3400, seed=1)
    classical = 3 * N_ATOMS * KB * temperature
    mean, se = block_mean(energies)
    assert abs(mean - classical) < 4 * se and se < 0.02 * classical
