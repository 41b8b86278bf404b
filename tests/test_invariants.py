"""Extensivity, locality, smoothness at the cutoff, isolated atoms, batching."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

import equipot
from equipot.calculator import frozen_copy
from equipot.graph import AtomicGraph, batch_graphs
from equipot.physics.derivatives import hessian_from_graph, predict
from tests.conftest import ELEMENTS, evaluate, random_cluster, random_crystal


def test_supercell_energy_is_extensive(model):
    for atoms in (random_crystal(4, seed=12), bulk("Cu", "fcc", a=3.6) * (1, 1, 1)):
        # cells shorter than 2·r_max: neighbours include several images of the same atom
        assert min(atoms.cell.lengths()) < 2 * model.config.r_max
        e1 = evaluate(model, atoms)["energy"]
        e8 = evaluate(model, atoms * (2, 2, 2))["energy"]
        assert abs(e8 - 8 * e1) < 1e-10 * abs(8 * e1)


def test_forces_sum_to_zero(structure, model):
    forces = evaluate(model, structure)["forces"]
    assert np.abs(forces.sum(0)).max() < 1e-10


def test_isolated_atom_energy_is_e0(model):
    for symbol in ELEMENTS:
        out = evaluate(model, Atoms(symbol, positions=[[0.0, 0.0, 0.0]]))
        assert out["energy"] == model.config.e0[symbol]
        assert np.all(out["forces"] == 0.0)
    far_apart = Atoms("HO", positions=[[0, 0, 0], [0, 0, model.config.r_max + 0.01]])
    assert abs(evaluate(model, far_apart)["energy"] - (-1.0 - 2.5)) < 1e-12


def test_energy_and_forces_continuous_at_cutoff(model):
    """Scan a neighbour across r_max: E, F (and dF/dr) go smoothly to their limits."""
    r_max = model.config.r_max
    base = random_cluster(3, seed=5)
    base.positions -= base.positions.mean(0)
    direction = np.array([0.36, 0.48, 0.8])
    far_point = base.positions.max(0) + r_max * direction / direction.max() * 2
    energies, forces, distances = [], [], []
    for offset in np.linspace(-0.05, 0.05, 41):
        atoms = base + Atoms("O", positions=[far_point])
        nearest = np.argmin(np.linalg.norm(base.positions - far_point, axis=1))
        vector = far_point - base.positions[nearest]
        atoms.positions[-1] = base.positions[nearest] + vector / np.linalg.norm(vector) * (
            r_max + offset
        )
        other = np.delete(np.linalg.norm(base.positions - atoms.positions[-1], axis=1), nearest)
        assert other.min() > r_max + 0.06  # only one neighbour crosses the cutoff
        out = evaluate(model, atoms)
        energies.append(out["energy"])
        forces.append(out["forces"][-1])
        distances.append(offset)
    energies, forces = np.array(energies), np.array(forces)
    separated = evaluate(model, base)["energy"] + model.config.e0["O"]
    outside = np.array(distances) >= 0
    assert np.abs(energies[outside] - separated).max() < 1e-12
    assert np.abs(forces[outside]).max() < 1e-12
    inside = ~outside
    # E − E_sep ∝ (r_max − r)^3 and F ∝ (r_max − r)^2 near the cutoff: tiny just inside
    gap = -np.array(distances)[inside]
    assert np.all(np.abs(energies[inside] - separated) <= 1e3 * gap**3 + 1e-14)
    assert np.all(np.linalg.norm(forces[inside], axis=1) <= 1e3 * gap**2 + 1e-14)
    assert np.abs(energies[inside] - separated).max() > 0  # the neighbour does interact


def test_batch_equals_individual(model):
    structures = [random_cluster(6, seed=1), random_crystal(5, seed=2), bulk("Cu") * (2, 1, 1)]
    frozen = frozen_copy(model, torch.float64, "cpu")
    graphs = [AtomicGraph.from_atoms(a, model.config.r_max) for a in structures]
    with torch.enable_grad():
        batched = predict(frozen, batch_graphs(graphs), stress=True)
        singles = [predict(frozen, g, stress=True) for g in graphs]
    assert torch.allclose(
        batched.energy, torch.cat([s.energy for s in singles]), rtol=0, atol=1e-12
    )
    assert torch.allclose(
        batched.forces, torch.cat([s.forces for s in singles]), rtol=0, atol=1e-12
    )
    periodic = [k for k, a in enumerate(structures) if a.pbc.all()]
    for k in periodic:
        assert torch.allclose(batched.stress[k], singles[k].stress[0], rtol=0, atol=1e-12)
    assert torch.isnan(batched.stress[0]).all()  # the molecule has no stress


def test_float32_close_to_float64(model):
    atoms = random_crystal(6, seed=3)
    e64, e32 = evaluate(model, atoms), evaluate(model, atoms, dtype="float32")
    assert abs(e64["energy"] - e32["energy"]) < 1e-4 * max(1.0, abs(e64["energy"]))
    assert np.abs(e64["forces"] - e32["forces"]).max() < 1e-4
    assert torch.get_default_dtype() == torch.float32  # nothing touched the global default


def test_per_atom_energies_sum_to_total(structure, model):
    atoms = structure.copy()
    atoms.calc = equipot.EquipotCalculator(model)
    assert abs(atoms.get_potential_energies().sum() - atoms.get_potential_energy()) < 1e-10


def test_memory_efficient_chunking_is_exact(model):
    """Chunked, recomputed edge blocks give the same energy, forces, stress and Hessian."""
    atoms = random_crystal(6, seed=4) * (2, 1, 1)
    plain = frozen_copy(model, torch.float64, "cpu")
    plain.fused_inference = False  # the modules' own chunking (the engine has its own test)
    for layer in plain.layers:
        layer.memory_efficient = False
    chunked = frozen_copy(model, torch.float64, "cpu")
    chunked.fused_inference = False
    for layer in chunked.layers:
        layer.chunk_slots = 40  # several chunks of a few centre atoms
        layer.chunk_atoms = 5
    graph = AtomicGraph.from_atoms(atoms, model.config.r_max)
    with torch.enable_grad():
        a, b = predict(plain, graph, stress=True), predict(chunked, graph, stress=True)
        ha, hb = hessian_from_graph(plain, graph), hessian_from_graph(chunked, graph)
    assert torch.allclose(a.energy, b.energy, rtol=0, atol=1e-12)
    assert torch.allclose(a.forces, b.forces, rtol=0, atol=1e-12)
    assert torch.allclose(a.stress, b.stress, rtol=0, atol=1e-12)
    assert torch.allclose(ha, hb, rtol=0, atol=1e-10)
