"""Forces, stress and Hessians against finite differences; sum rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.fd import calculate_numerical_stress

import equipot
from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.physics.derivatives import hessian_vector_product
from tests.conftest import evaluate, random_cluster, random_crystal


def _energy(model, atoms):
    return evaluate(model, atoms)["energy"]


def test_forces_match_finite_differences(structure, model):
    forces = evaluate(model, structure)["forces"]
    h = 1e-5
    rng = np.random.default_rng(0)
    for atom in rng.choice(len(structure), 3, replace=False):
        for axis in range(3):
            plus, minus = structure.copy(), structure.copy()
            plus.positions[atom, axis] += h
            minus.positions[atom, axis] -= h
            fd = -(_energy(model, plus) - _energy(model, minus)) / (2 * h)
            assert abs(fd - forces[atom, axis]) < 1e-7 + 1e-6 * abs(fd)


def test_stress_matches_ase_numerical_stress(model):
    atoms = random_crystal(6, seed=2)
    atoms.calc = equipot.EquipotCalculator(model)
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    scale = np.abs(numerical).max()
    assert scale > 1e-4
    assert np.abs(stress - numerical).max() < 1e-6 * scale


def test_stress_undefined_for_non_periodic(model):
    atoms = random_cluster(5)
    atoms.calc = equipot.EquipotCalculator(model)
    with pytest.raises(ValueError, match="periodic in all 3 directions"):
        atoms.get_stress()


@pytest.mark.parametrize("kind", ["molecule", "bulk"])
def test_hessian_symmetric_and_matches_fd_of_forces(model, kind):
    atoms = random_cluster(5, seed=2) if kind == "molecule" else random_crystal(4, seed=6)
    hess = equipot.hessian(model, atoms)
    n3 = 3 * len(atoms)
    assert hess.shape == (n3, n3) and hess.dtype == np.float64
    assert np.abs(hess - hess.T).max() < 1e-10 * max(1.0, np.abs(hess).max())
    h = 1e-5
    fd = np.zeros_like(hess)
    for k in range(n3):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions.flat[k] += h
        minus.positions.flat[k] -= h
        fd[k] = -(evaluate(model, plus)["forces"] - evaluate(model, minus)["forces"]).ravel() / (
            2 * h
        )
    assert np.abs(hess - fd).max() < 1e-6 * np.abs(hess).max()


def _rigid_modes(atoms, rotations: bool) -> np.ndarray:
    n = len(atoms)
    modes = [np.tile(np.eye(3)[k], n) for k in range(3)]
    if rotations:
        centred = atoms.positions - atoms.positions.mean(0)
        for k in range(3):
            modes.append(np.cross(np.eye(3)[k], centred).ravel())
    return np.array(modes)


def test_acoustic_sum_rule(model):
    crystal = random_crystal(4, seed=8)
    hess = equipot.hessian(model, crystal)
    assert np.abs(hess @ _rigid_modes(crystal, rotations=False).T).max() < 1e-8
    molecule = random_cluster(6, seed=9)
    hess = equipot.hessian(model, molecule)
    assert np.abs(hess @ _rigid_modes(molecule, rotations=False).T).max() < 1e-8


def test_rotations_are_zero_modes_at_a_stationary_point(model):
    """At a minimum of a molecule the rigid rotations are zero modes of the Hessian too."""
    from ase.optimize import BFGS

    molecule = random_cluster(4, seed=10)
    molecule.calc = equipot.EquipotCalculator(model)
    BFGS(molecule, logfile=None).run(fmax=1e-9, steps=2000)
    assert np.abs(molecule.get_forces()).max() < 1e-8
    hess = equipot.hessian(model, molecule)
    modes = _rigid_modes(molecule, rotations=True)
    assert np.abs(hess @ modes.T).max() < 1e-7


def test_hessian_vector_product_matches_dense(model):
    atoms = random_cluster(6, seed=4)
    hess = equipot.hessian(model, atoms)
    frozen = frozen_copy(model, torch.float64, "cpu")
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    v = torch.randn(
        2, len(atoms), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    hv = hessian_vector_product(frozen, graph, v).numpy().reshape(2, -1)
    assert np.allclose(hv, v.numpy().reshape(2, -1) @ hess.T, atol=1e-10)


def test_rigid_body_modes_span_and_projection():
    from equipot.physics.modes import project_out, rigid_body_modes

    molecule = random_cluster(5, seed=3)
    modes = rigid_body_modes(molecule.positions)
    assert modes.shape == (6, 15)
    assert np.allclose(modes @ modes.T, np.eye(6), atol=1e-12)
    linear = np.array([[0.0, 0.0, z] for z in (0.0, 1.1, 2.3)])
    assert rigid_body_modes(linear).shape[0] == 5  # a linear molecule has two rotations
    assert rigid_body_modes(molecule.positions, rotations=False).shape[0] == 3
    hess = equipot.hessian(small_model_for_modes(), molecule)
    projected = project_out(hess, modes)
    assert np.abs(projected @ modes.T).max() < 1e-12
    assert np.allclose(projected, projected.T)


def small_model_for_modes():
    from tests.conftest import small_model

    return small_model(seed=5)
