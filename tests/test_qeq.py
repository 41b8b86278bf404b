"""Charge equilibration: exact total charge, a true constrained minimum, variational forces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from equipot.electrostatics import CoulombOptions, coulomb_potentials
from equipot.electrostatics.kernels import COULOMB_CONSTANT
from equipot.electrostatics.qeq import coulomb_matrix, equilibrate


def systems():
    rng = np.random.default_rng(0)
    molecule = torch.as_tensor(rng.uniform(0, 5.0, (6, 3)))
    crystal = bulk("NaCl", "rocksalt", a=5.2, cubic=True)
    crystal.rattle(0.1, seed=2)
    positions = torch.cat([molecule, torch.as_tensor(crystal.positions)])
    cell = torch.stack([torch.zeros(3, 3, dtype=torch.float64), torch.as_tensor(crystal.cell[:])])
    pbc = torch.tensor([[False] * 3, [True] * 3])
    return positions, cell, pbc, [6, 8]


def parameters(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    chi = torch.as_tensor(rng.normal(0.0, 2.0, n))
    hardness = torch.as_tensor(rng.uniform(2.0, 8.0, n))
    return chi, hardness


@pytest.mark.parametrize("smearing", [0.7, 1.2])
def test_total_charge_exact_and_minimum(smearing):
    positions, cell, pbc, n_atoms = systems()
    options = CoulombOptions(smearing=smearing, accuracy=1e-10)
    chi, hardness = parameters(len(positions))
    total = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    q, atomic = equilibrate(positions, cell, pbc, n_atoms, chi, hardness, total, options)
    assert float(q[:6].sum()) == pytest.approx(-1.0, abs=1e-12)
    assert float(q[6:].sum()) == pytest.approx(0.5, abs=1e-12)

    def energy(charges):
        phi = coulomb_potentials(positions, charges, cell, pbc, n_atoms, options)
        self_term = options.kernel.self_value(smearing)
        return (
            chi * charges
            + 0.5 * hardness * charges**2
            + 0.5 * COULOMB_CONSTANT * charges * (phi + self_term * charges)
        )

    e0 = energy(q)
    assert torch.allclose(e0, atomic, atol=1e-10)  # same energy through the potentials
    rng = np.random.default_rng(3)
    for _ in range(5):  # every charge-conserving move raises the energy
        move = torch.as_tensor(rng.normal(size=len(q)) * 0.05)
        move[:6] -= move[:6].mean()
        move[6:] -= move[6:].mean()
        assert float(energy(q + move).sum()) > float(e0.sum())


def test_coulomb_matrix_is_symmetric_and_gives_the_potentials():
    positions, cell, pbc, _ = systems()
    options = CoulombOptions(smearing=1.0, accuracy=1e-10)
    crystal = slice(6, 14)
    matrix = coulomb_matrix(positions[crystal], cell[1], pbc[1], options)
    assert torch.allclose(matrix, matrix.T, atol=1e-10)
    q = torch.linspace(-1, 1, 8, dtype=torch.float64)
    phi = coulomb_potentials(positions[crystal], q, cell[1:], pbc[1:], [8], options)
    assert torch.allclose(matrix @ q, phi, atol=1e-9)


def test_variational_forces():
    """At the constrained minimum ∂E/∂q ∝ 1 and Σ dq = 0, so dE/dr equals the partial
    derivative at fixed charges (the charges' response drops out of the forces)."""
    positions, cell, pbc, n_atoms = systems()
    options = CoulombOptions(smearing=1.0, accuracy=1e-10)
    chi, hardness = parameters(len(positions))
    total = torch.tensor([0.0, 1.0], dtype=torch.float64)
    r = positions.clone().requires_grad_(True)
    _, atomic = equilibrate(r, cell, pbc, n_atoms, chi, hardness, total, options)
    (full,) = torch.autograd.grad(atomic.sum(), r)
    q, _ = equilibrate(positions, cell, pbc, n_atoms, chi, hardness, total, options)
    r2 = positions.clone().requires_grad_(True)
    phi = coulomb_potentials(r2, q, cell, pbc, n_atoms, options)
    (partial,) = torch.autograd.grad((0.5 * COULOMB_CONSTANT * q * phi).sum(), r2)
    assert torch.allclose(full, partial, atol=1e-8)


def test_point_charges_refused():
    positions, cell, pbc, n_atoms = systems()
    chi, hardness = parameters(len(positions))
    with pytest.raises(ValueError, match="Gaussian charges"):
        equilibrate(positions, cell, pbc, n_atoms, chi, hardness, torch.zeros(2), CoulombOptions())
