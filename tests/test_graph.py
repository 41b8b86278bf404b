"""AtomicGraph: construction, batching, unbatching, device/dtype moves."""

from __future__ import annotations

import torch
from ase.build import bulk, molecule

from equipot.graph import AtomicGraph, Scope, batch_graphs, tensor_fields


def test_from_atoms_and_batching_round_trip():
    structures = [molecule("H2O"), bulk("Cu", cubic=True), molecule("CH4")]
    graphs = [AtomicGraph.from_atoms(a, 3.0) for a in structures]
    batch = batch_graphs(graphs)
    assert batch.num_systems == 3
    assert batch.num_atoms == sum(len(a) for a in structures)
    expected = [k for k, a in enumerate(structures) for _ in range(len(a))]
    assert batch.batch.tolist() == expected
    for original, recovered in zip(graphs, batch.unbatch(), strict=True):
        for f in tensor_fields():
            assert torch.equal(getattr(original, f.name), getattr(recovered, f.name)), f.name


def test_edge_vectors_follow_the_convention():
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    graph = AtomicGraph.from_atoms(atoms, 3.0)
    vectors = graph.edge_vectors()
    assert torch.allclose(
        vectors.norm(dim=1), torch.full((graph.num_edges,), 3.6 / 2**0.5, dtype=torch.float64)
    )
    assert bool((graph.edge_index[0][1:] >= graph.edge_index[0][:-1]).all())


def test_to_changes_dtype_of_floats_only():
    graph = AtomicGraph.from_atoms(molecule("H2O"), 3.0).to(dtype=torch.float32)
    assert graph.positions.dtype == torch.float32 and graph.cell.dtype == torch.float32
    assert graph.atomic_numbers.dtype == torch.int64 and graph.edge_index.dtype == torch.int64
    scopes = {f.name: f.metadata["scope"] for f in tensor_fields()}
    assert scopes["positions"] is Scope.ATOM and scopes["edge_shift"] is Scope.EDGE
