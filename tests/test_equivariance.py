"""E(3) symmetry of energies, forces and stress (float64, < 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tests.conftest import evaluate, random_cluster, random_crystal, small_model

TOL = 1e-10


def _transformed(atoms, matrix, translation):
    out = atoms.copy()
    out.positions = atoms.positions @ matrix.T + translation
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    return out


@pytest.mark.parametrize("reflect", [False, True])
def test_energy_invariant_forces_equivariant(structure, model, reflect):
    ref = evaluate(model, structure)
    for seed in range(3):
        matrix = Rotation.random(random_state=seed).as_matrix() * (-1 if reflect else 1)
        moved = _transformed(structure, matrix, np.array([0.7, -1.3, 2.1]))
        out = evaluate(model, moved)
        assert abs(out["energy"] - ref["energy"]) < TOL
        assert np.abs(out["forces"] - ref["forces"] @ matrix.T).max() < TOL


def test_higher_degrees_and_correlation_four(model_l3):
    atoms = random_crystal(5, seed=7)
    ref = evaluate(model_l3, atoms, stress=True)
    matrix = -Rotation.random(random_state=11).as_matrix()
    out = evaluate(model_l3, _transformed(atoms, matrix, np.zeros(3)), stress=True)
    assert abs(out["energy"] - ref["energy"]) < TOL
    assert np.abs(out["forces"] - ref["forces"] @ matrix.T).max() < TOL
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]

    def full(v):
        s = np.zeros((3, 3))
        for k, (a, b) in enumerate(voigt):
            s[a, b] = s[b, a] = v[k]
        return s

    assert np.abs(full(out["stress"]) - matrix @ full(ref["stress"]) @ matrix.T).max() < TOL


def test_permutation_of_atoms(structure, model):
    ref = evaluate(model, structure)
    perm = np.random.default_rng(0).permutation(len(structure))
    out = evaluate(model, structure[perm])
    assert abs(out["energy"] - ref["energy"]) < TOL
    assert np.abs(out["forces"] - ref["forces"][perm]).max() < TOL


def test_translation_by_lattice_vector_and_wrapping(model):
    atoms = random_crystal(6, seed=5)
    ref = evaluate(model, atoms)
    shifted = atoms.copy()
    shifted.positions[2] += atoms.cell[0] - 2 * atoms.cell[2]
    wrapped = atoms.copy()
    wrapped.wrap()
    for other in (shifted, wrapped):
        out = evaluate(model, other)
        assert abs(out["energy"] - ref["energy"]) < TOL
        assert np.abs(out["forces"] - ref["forces"]).max() < TOL


def test_mirror_image_chirality():
    """O(3) model: a chiral structure and its mirror image have equal energies; SO(3) model
    (pseudo-tensor paths kept) tells them apart."""
    chiral = random_cluster(7, seed=3)
    mirror = chiral.copy()
    mirror.positions[:, 0] *= -1
    o3 = small_model(parity=True, seed=4)
    assert abs(evaluate(o3, chiral)["energy"] - evaluate(o3, mirror)["energy"]) < TOL
    so3 = small_model(parity=False, seed=4)
    e, e_mirror = evaluate(so3, chiral)["energy"], evaluate(so3, mirror)["energy"]
    assert abs(e - e_mirror) > 1e-6
    # ... while it remains invariant under proper rotations
    matrix = Rotation.random(random_state=2).as_matrix()
    rotated = _transformed(chiral, matrix, np.zeros(3))
    assert abs(evaluate(so3, rotated)["energy"] - e) < TOL
