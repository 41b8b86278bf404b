"""Field response by autograd: −∂E/∂ℰ, α, Born charges vs finite differences; sum rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import equipot
from equipot.physics.fields import field_response
from tests.conftest import random_cluster, random_crystal, small_model

H = 1e-4  # finite-difference step (V/Å and Å); central differences, error O(h²)


@pytest.fixture(scope="module")
def model():
    return small_model(seed=2, heads={"dipole": {}, "polarizability": {}})


def graph_of(atoms, efield=(0.05, -0.1, 0.02), charge=0.0):
    graph = equipot.AtomicGraph.from_atoms(atoms, 3.5)
    return graph.replace(
        efield=torch.tensor(np.asarray(efield, dtype=np.float64)[None]),
        charge=torch.tensor([charge], dtype=torch.float64),
    )


def response(model, graph, **kw):
    r = field_response(model, graph, **kw)
    return {
        k: getattr(r, k).detach().numpy()
        for k in ("energy", "dipole", "polarizability", "born_charges", "forces")
        if getattr(r, k) is not None
    }


def central(f, x0: torch.Tensor, index) -> np.ndarray:
    plus, minus = x0.clone(), x0.clone()
    plus[index] += H
    minus[index] -= H
    return (f(plus) - f(minus)) / (2 * H)


@pytest.mark.parametrize("kind", ["molecule", "crystal"])
def test_derivatives_match_finite_differences(model, kind):
    atoms = random_cluster(6, seed=1) if kind == "molecule" else random_crystal(5, seed=2)
    graph = graph_of(atoms)
    ref = response(model, graph, forces=True)

    def energy(efield):
        return model(graph.replace(efield=efield)).energy.detach().numpy()[0]

    def dipole_at(**change):
        return response(model, graph.replace(**change), polarizability=False, born_charges=False)[
            "dipole"
        ][0]

    fd_dipole = np.array([-central(energy, graph.efield, (0, b)) for b in range(3)])
    assert np.abs(fd_dipole - ref["dipole"][0]).max() < 1e-7
    fd_alpha = np.stack(
        [central(lambda e: dipole_at(efield=e), graph.efield, (0, b)) for b in range(3)], axis=1
    )
    assert np.abs(fd_alpha - ref["polarizability"][0]).max() < 1e-9
    assert np.abs(ref["polarizability"][0] - ref["polarizability"][0].T).max() < 1e-15
    for i, b in [(0, 0), (3, 2), (4, 1)]:
        fd_z = central(lambda p: dipole_at(positions=p), graph.positions, (i, b))
        assert np.abs(fd_z - ref["born_charges"][i, :, b]).max() < 1e-8
        # Z*_i = ∂F_i/∂ℰ: the same numbers from the forces
        fd_f = central(
            lambda e, i=i: response(model, graph.replace(efield=e), forces=True)["forces"][i],
            graph.efield,
            (0, b),
        )
        assert np.abs(fd_f - ref["born_charges"][i, b, :]).max() < 1e-8


@pytest.mark.parametrize("charge", [0.0, 1.0, -2.0])
def test_acoustic_sum_rule(model, charge):
    for atoms in (random_cluster(7, seed=4), random_crystal(5, seed=3)):
        z = response(model, graph_of(atoms, charge=charge))["born_charges"]
        assert np.abs(z.sum(0) - charge * np.eye(3)).max() < 1e-12
        assert np.abs(z).max() > 1e-4


def test_energy_in_field_and_calculator(model):
    atoms = random_cluster(6, seed=5)
    efield = np.array([0.02, 0.03, -0.05])
    zero = response(model, graph_of(atoms, efield=(0.0, 0.0, 0.0)))
    mu, alpha = zero["dipole"][0], zero["polarizability"][0]
    in_field = response(model, graph_of(atoms, efield=efield), forces=True)
    expected = zero["energy"][0] - mu @ efield - 0.5 * efield @ alpha @ efield
    assert abs(in_field["energy"][0] - expected) < 1e-12
    assert np.abs(in_field["dipole"][0] - (mu + alpha @ efield)).max() < 1e-12

    atoms.calc = equipot.EquipotCalculator(model, efield=efield)
    assert abs(atoms.get_potential_energy() - expected) < 1e-10
    assert np.abs(atoms.get_dipole_moment() - in_field["dipole"][0]).max() < 1e-12
    assert np.abs(atoms.calc.get_property("polarizability") - alpha).max() < 1e-12
    bec = atoms.calc.get_property("born_effective_charges")
    assert np.abs(bec - in_field["born_charges"]).max() < 1e-12
    assert np.abs(atoms.get_forces() - in_field["forces"]).max() < 1e-10


def test_models_without_field_coupling_are_refused():
    with pytest.raises(ValueError, match="does not depend on an electric field"):
        field_response(small_model(seed=1), graph_of(random_cluster(4, seed=1)))
    with pytest.raises(ValueError, match="efield needs a model"):
        equipot.EquipotCalculator(small_model(seed=1, heads={"bec": {}}), efield=[0, 0, 1])
