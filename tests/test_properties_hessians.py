"""Force constants: autograd vs finite differences on a model; the finite-difference path."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import equipot
from equipot.properties.hessians import force_constants, mass_weighted
from tests.conftest import random_cluster, random_crystal


@pytest.mark.parametrize("kind", ["molecule", "crystal"])
def test_autograd_and_finite_difference_paths_agree(model, kind):
    atoms = random_cluster(5, seed=2) if kind == "molecule" else random_crystal(4, seed=6)
    exact = force_constants(atoms, model)  # auto → autograd for a model
    # through the ASE-calculator adapter: same model, forces differentiated numerically
    calc = equipot.EquipotCalculator(model)
    fd = force_constants(atoms, calc, method="finite-difference", delta=1e-3, stencil=4)
    scale = np.abs(exact).max()
    assert scale > 0.1
    assert np.abs(exact - fd).max() < 1e-6 * scale
    # the calculator path defaults to autograd too
    assert np.abs(force_constants(atoms, calc) - exact).max() < 1e-10 * scale


def test_finite_difference_obeys_translation_sum_rule():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    phi = force_constants(atoms, EMT(), delta=0.005)
    assert np.abs(phi - phi.T).max() == 0.0
    row_sums = phi.reshape(len(atoms) * 3, len(atoms), 3).sum(axis=1)
    assert np.abs(row_sums).max() < 1e-6 * np.abs(phi).max()


def test_autograd_needs_a_model():
    with pytest.raises(ValueError, match="needs an equipot model"):
        force_constants(bulk("Cu"), EMT(), method="autograd")
    with pytest.raises(ValueError, match="unknown Hessian method"):
        force_constants(bulk("Cu"), EMT(), method="magic")


def test_mass_weighting():
    phi = np.arange(36.0).reshape(6, 6)
    d = mass_weighted(phi, [4.0, 9.0])
    expected = phi / np.sqrt(np.outer(np.repeat([4.0, 9.0], 3), np.repeat([4.0, 9.0], 3)))
    assert np.allclose(d, expected)


def test_selected_rows_equal_the_full_matrix(model):
    atoms = random_crystal(4, seed=6)
    indices = [2, 0]
    rows = np.concatenate([np.arange(3 * i, 3 * i + 3) for i in indices])
    exact = force_constants(atoms, model)
    scale = np.abs(exact).max()
    assert (
        np.abs(force_constants(atoms, model, indices=indices) - exact[rows]).max() < 1e-10 * scale
    )
    fd_rows = force_constants(atoms, model, indices=indices, method="finite-difference", delta=1e-4)
    assert fd_rows.shape == (6, 12)
    assert np.abs(fd_rows - exact[rows]).max() < 1e-6 * scale
