"""Hessians and Hessian-vector products from the C++ second-order engine vs autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.graph import batch_graphs
from equipot.model.second_order import engine_runs, hessian_vectors
from equipot.physics.derivatives import hessian_from_graph, hessian_vector_product
from tests.conftest import random_cluster, random_crystal, small_model

pytestmark = pytest.mark.usefixtures("kernels")

STRUCTURES = {
    "molecule": lambda: random_cluster(7, seed=1),
    "bulk": lambda: random_crystal(5, seed=2),
    "slab": lambda: random_crystal(5, seed=3, pbc=(True, True, False), vacuum=3.0),
}


def _pair(model):
    fast = frozen_copy(model, torch.float64, "cpu")
    slow = frozen_copy(model, torch.float64, "cpu").set_execution(
        kernels=False, memory_efficient=False
    )
    return fast, slow


@pytest.mark.parametrize("kind", sorted(STRUCTURES))
@pytest.mark.parametrize("l_max,correlation,parity", [(2, 3, True), (3, 4, True), (2, 2, False)])
def test_hessian_equals_autograd(kind, l_max, correlation, parity):
    model = small_model(l_max=l_max, correlation=correlation, parity=parity, seed=l_max)
    fast, slow = _pair(model)
    graph = atoms_to_graph(STRUCTURES[kind](), model.config.r_max, torch.float64)
    with torch.enable_grad():
        reference = hessian_from_graph(slow, graph)
    hessian = hessian_from_graph(fast, graph)
    assert engine_runs(fast) == 1 and engine_runs(slow) == 0
    scale = float(reference.abs().max())
    assert float((hessian - reference).abs().max()) <= 1e-10 * scale
    assert float((hessian - hessian.T).abs().max()) <= 1e-10 * scale


def test_hessian_vector_products_batched_systems():
    """HVPs of a batch of two systems (one direction and several, chunked) equal autograd."""
    model = small_model(l_max=2, seed=4, radial_hidden=[16])
    fast, slow = _pair(model)
    graph = batch_graphs(
        [
            atoms_to_graph(a, model.config.r_max, torch.float64)
            for a in (random_cluster(6, seed=2), random_crystal(5, seed=5))
        ]
    )
    vectors = torch.randn(
        5, graph.num_atoms, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    with torch.enable_grad():
        reference = hessian_vector_product(slow, graph, vectors)
    import equipot.model.second_order as so

    chunk, so.HESSIAN_CHUNK_ELEMENTS = so.HESSIAN_CHUNK_ELEMENTS, 1  # one direction per call
    try:
        chunked = hessian_vectors(fast, graph, vectors)
    finally:
        so.HESSIAN_CHUNK_ELEMENTS = chunk
    single = hessian_vector_product(fast, graph, vectors[0])
    scale = float(reference.abs().max())
    assert float((chunked - reference).abs().max()) <= 1e-10 * scale
    assert float((single - reference[0]).abs().max()) <= 1e-10 * scale


def test_engine_not_used_where_it_does_not_apply():
    model = small_model(seed=1)
    graph = atoms_to_graph(random_cluster(5, seed=3), model.config.r_max, torch.float64)
    v = torch.zeros(1, graph.num_atoms, 3, dtype=torch.float64)
    assert hessian_vectors(model, graph, v) is None  # trainable weights
    float32 = frozen_copy(model, torch.float32, "cpu")
    assert hessian_vectors(float32, graph, v) is None  # another dtype than the graph


def _close_contacts(atoms):
    """``atoms`` with an H 0.65 Å from the first C (inside the C–H switch, 0.535–0.80 Å) and
    one 0.45 Å from the first O (below the O–H switch's inner edge, full ZBL)."""
    atoms = atoms.copy()
    numbers = atoms.get_atomic_numbers()
    carbon, oxygen = (int((numbers == z).nonzero()[0][0]) for z in (6, 8))
    away = [
        atoms.positions[c] + d * np.array(v) / np.linalg.norm(v)
        for c, d, v in ((carbon, 0.65, (1.0, 0.3, -0.2)), (oxygen, 0.45, (-0.4, 1.0, 0.5)))
    ]
    atoms.extend(type(atoms)("H2", positions=away))
    return atoms


@pytest.mark.parametrize("kind", ["molecule", "bulk"])
def test_hessian_with_zbl_repulsion_equals_autograd(kind):
    """Default models have the ZBL term: the engine adds its exact edge-space Hessian."""
    model = small_model(l_max=2, seed=6)
    assert "repulsion" in model.terms  # on by default
    fast, slow = _pair(model)
    atoms = _close_contacts(STRUCTURES[kind]())
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    zbl = fast.terms["repulsion"]
    from equipot.model.terms import TermInputs

    species, _, vectors, _ = fast._prepare(graph)
    assert float(zbl(TermInputs(graph, species, vectors)).abs().sum()) > 1.0  # the wall is hit
    with torch.enable_grad():
        reference = hessian_from_graph(slow, graph)
        without = hessian_from_graph(
            frozen_copy(small_model(l_max=2, seed=6, repulsion=None), torch.float64, "cpu"),
            graph,
        )
    hessian = hessian_from_graph(fast, graph)
    assert engine_runs(fast) == 1 and engine_runs(slow) == 0
    scale = float(reference.abs().max())
    assert float((without - reference).abs().max()) > 0.1 * scale  # the term matters
    assert float((hessian - reference).abs().max()) <= 1e-10 * scale
    assert float((hessian - hessian.T).abs().max()) <= 1e-10 * scale
    v = torch.randn(3, graph.num_atoms, 3, dtype=torch.float64)
    with torch.enable_grad():
        hv_reference = hessian_vector_product(slow, graph, v)
    hv = hessian_vector_product(fast, graph, v)
    assert engine_runs(fast) == 2
    assert float((hv - hv_reference).abs().max()) <= 1e-10 * float(hv_reference.abs().max())
