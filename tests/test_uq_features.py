"""Readout features: the engine and the modules agree, and the energy is affine in θ."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import equipot
from equipot.calculator import frozen_copy
from tests.conftest import random_cluster, random_crystal, small_model


def _graph(atoms, model):
    return equipot.atoms_to_graph(atoms, model.config.r_max, torch.float64)


@pytest.mark.parametrize("make", [lambda: random_cluster(8, seed=1), lambda: random_crystal(6)])
def test_engine_features_match_modules(make):
    model = small_model()
    fast = frozen_copy(model, torch.float64, "cpu")
    graph = _graph(make(), model)
    engine = equipot.predict(fast, graph, forces=True, features=True)
    assert fast.inference_pass(graph) is not None  # the engine path really runs
    with torch.enable_grad():
        reference = equipot.predict(model, graph, forces=True, features=True)
    D = sum(len(layer.node.readout[-1]) for layer in model.layers)
    assert engine.features.shape == (graph.num_atoms, D)
    np.testing.assert_allclose(engine.features, reference.features.detach(), atol=1e-11)
    np.testing.assert_allclose(engine.forces, reference.forces.detach(), atol=1e-11)


def test_atomic_energy_is_affine_in_readout_weights():
    """E_i(θ + δθ) − E_i(θ) = φ̃_i·δθ for any δθ (features do not depend on θ)."""
    model = small_model(seed=3)
    graph = _graph(random_crystal(6, seed=5), model)
    before = model(graph, features=True)
    shifted = copy.deepcopy(model)
    rng = np.random.default_rng(0)
    deltas = []
    with torch.no_grad():
        for layer in shifted.layers:
            last = layer.node.readout[-1]
            delta = torch.as_tensor(rng.normal(size=last.shape), dtype=last.dtype)
            last += delta
            deltas.append(delta[:, 0])
    after = shifted(graph, features=True)
    expected = before.features @ torch.cat(deltas)
    np.testing.assert_allclose(
        (after.atomic_energies - before.atomic_energies).detach(), expected.detach(), atol=1e-12
    )
    np.testing.assert_allclose(after.features.detach(), before.features.detach(), atol=1e-13)
    assert torch.equal(shifted.readout_weights(), model.readout_weights() + torch.cat(deltas))
