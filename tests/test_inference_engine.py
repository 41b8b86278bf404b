"""The whole-model C++ inference pass against the differentiable modules (autograd)."""

from __future__ import annotations

import copy

import pytest
import torch

from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.graph import batch_graphs
from equipot.physics.derivatives import predict
from tests.conftest import random_cluster, random_crystal, small_model

pytestmark = pytest.mark.usefixtures("kernels")


def _pair(model, dtype=torch.float64, table: int = 0):
    """The same frozen model twice: C++ engine (radial MLP evaluated exactly unless ``table``
    nodes are given), and autograd through the reference modules."""
    fast = frozen_copy(model, dtype, "cpu")
    fast.inference_radial_table = table
    slow = frozen_copy(model, dtype, "cpu").set_execution(kernels=False, memory_efficient=False)
    return fast, slow


def _graph(atoms, model, dtype=torch.float64):
    return atoms_to_graph(atoms, model.config.r_max, dtype)


def _assert_same(a, b, stress: bool, rtol: float):
    def close(x, y):
        scale = float(y.abs().max()) + 1e-12
        assert float((x - y).abs().max()) <= rtol * scale

    close(a.energy, b.energy)
    close(a.atomic_energies, b.atomic_energies)
    close(a.forces, b.forces)
    if stress:
        periodic = torch.isfinite(b.stress)
        assert torch.equal(periodic, torch.isfinite(a.stress))
        close(a.stress[periodic], b.stress[periodic])
        close(a.virial, b.virial)


STRUCTURES = {
    "molecule": lambda: random_cluster(9, seed=5),  # dense: every atom sees every other
    "bulk": lambda: random_crystal(6, seed=2),  # ragged neighbour counts, periodic images
    "slab": lambda: random_crystal(6, seed=3, pbc=(True, True, False), vacuum=3.0),
}


@pytest.mark.parametrize("kind", sorted(STRUCTURES))
@pytest.mark.parametrize("l_max,correlation,parity", [(2, 3, True), (3, 4, True), (2, 2, False)])
def test_engine_matches_autograd_float64(kind, l_max, correlation, parity):
    model = small_model(l_max=l_max, correlation=correlation, parity=parity, seed=l_max)
    fast, slow = _pair(model)
    atoms = STRUCTURES[kind]()
    graph = _graph(atoms, model)
    assert fast.inference_pass(graph) is not None  # the engine really runs
    stress = bool(atoms.pbc.all())
    with torch.enable_grad():
        _assert_same(
            predict(fast, graph, stress=stress), predict(slow, graph, stress=stress), stress, 1e-12
        )


def test_engine_scalar_features_and_one_element():
    """Scalar-only hidden features (no linear_up after layer 0) and a one-element model."""
    import equipot

    copper = random_crystal(6, seed=7)
    copper.numbers[:] = 29
    for elements, atoms in ((["H", "C", "O", "Cu"], random_crystal(6, seed=5)), (["Cu"], copper)):
        model = equipot.build_model(
            elements, r_max=3.5, l_max=2, channels=8, hidden_l_max=0, radial_hidden=[16]
        )
        fast, slow = _pair(model)
        graph = _graph(atoms, model)
        with torch.enable_grad():
            a, b = predict(fast, graph, stress=True), predict(slow, graph, stress=True)
        _assert_same(a, b, True, 1e-12)


def test_engine_batch_of_systems_and_float32():
    model = small_model(readout_hidden=12)
    structures = [random_cluster(7, seed=1), random_crystal(6, seed=2), random_crystal(5, seed=6)]
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        fast, slow = _pair(model, dtype)
        graph = batch_graphs([_graph(a, model, dtype) for a in structures])
        with torch.enable_grad():
            a, b = predict(fast, graph, stress=True), predict(slow, graph, stress=True)
        _assert_same(a, b, True, rtol)
        assert torch.isnan(a.stress[0]).all() and torch.isfinite(a.stress[1:]).all()


def test_engine_chunks_are_exact():
    """Chunked edge blocks (activations recomputed in the backward pass) change nothing."""
    model = small_model()
    atoms = random_crystal(6, seed=4) * (2, 2, 1)
    graph = _graph(atoms, model)
    assert graph.edge_index.shape[1] > 4 * 30
    for table in (0, 1024):
        whole, chunked = (frozen_copy(model, torch.float64, "cpu") for _ in range(2))
        whole.inference_radial_table = chunked.inference_radial_table = table
        chunked.inference_chunk_slots = 30  # a few centre atoms per chunk
        a, b = predict(whole, graph, stress=True), predict(chunked, graph, stress=True)
        _assert_same(a, b, True, 1e-13)


@pytest.mark.parametrize("kind", sorted(STRUCTURES))
def test_tabulated_radial_functions(kind):
    """Interpolated R(r): close to the exact MLP, and forces/stress are still the exact
    derivatives of the energy the engine computes (central differences of that energy)."""
    model = small_model(l_max=3, correlation=3, seed=4)
    fast, slow = _pair(model, table=1024)
    atoms = STRUCTURES[kind]()
    stress = bool(atoms.pbc.all())
    graph = _graph(atoms, model)
    with torch.enable_grad():
        tabulated = predict(fast, graph, stress=stress)
        _assert_same(tabulated, predict(slow, graph, stress=stress), stress, 1e-9)
    h = 1e-5
    for atom, axis in ((0, 0), (3, 2), (len(atoms) - 1, 1)):
        energies = []
        for sign in (1, -1):
            moved = graph.positions.clone()
            moved[atom, axis] += sign * h
            energies.append(float(predict(fast, graph.replace(positions=moved)).energy))
        fd = -(energies[0] - energies[1]) / (2 * h)
        assert abs(fd - float(tabulated.forces[atom, axis])) < 1e-8 + 1e-7 * abs(fd)
    fast.inference_radial_table = 3
    with pytest.raises(ValueError, match="inference_radial_table"):
        predict(fast, graph)
    fast.inference_radial_table = 1024
    copied = copy.deepcopy(fast)  # building the table left nothing uncopyable behind
    assert torch.allclose(predict(copied, graph).energy, tabulated.energy, rtol=1e-13, atol=0)


def test_engine_follows_weight_changes_and_copies():
    model = small_model()
    atoms = random_cluster(8, seed=2)
    fast, slow = _pair(model)
    graph = _graph(atoms, model)
    before = predict(fast, graph).energy.clone()
    for m in (fast, slow):
        with torch.no_grad():
            m.layers[1].edge.radial.weights[0].mul_(1.5)  # in place: same tensor, new version
    after, reference = predict(fast, graph), predict(slow, graph)
    assert not torch.allclose(before, after.energy)
    _assert_same(after, reference, False, 1e-12)
    copied = copy.deepcopy(fast)  # a built engine is not copied; the copy builds its own
    assert copied.engine_slot.engine is None
    _assert_same(predict(copied, graph), reference, False, 1e-12)


def test_engine_only_for_frozen_cpu_first_derivatives():
    model = small_model()
    graph = _graph(random_cluster(6, seed=3), model)
    assert model.inference_pass(graph) is None  # weights require gradients (training)
    fast = frozen_copy(model, torch.float64, "cpu")
    assert fast.inference_pass(_graph(random_cluster(6, seed=3), model, torch.float32)) is None
    assert fast.set_execution(kernels=False, memory_efficient=True).inference_pass(graph) is None
    # create_graph (forces as a differentiable function) keeps to autograd
    fast.set_execution(kernels=True, memory_efficient=True)
    positions = graph.positions.clone().requires_grad_(True)
    pred = predict(fast, graph.replace(positions=positions), create_graph=True)
    assert pred.forces.requires_grad
