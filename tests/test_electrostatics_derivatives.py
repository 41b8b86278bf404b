"""Forces, stress and Hessians of the electrostatic energy (autograd) vs finite differences,
and continuity of the mesh method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, make_supercell

import equipot
from equipot.electrostatics import FixedCharges
from equipot.electrostatics.pme import default_oversampling, mesh_shape

CHARGES = {"Na": 0.9, "Cl": -1.1}  # a charged cell when the counts differ


def salt(seed: int = 0) -> Atoms:
    atoms = make_supercell(bulk("NaCl", "rocksalt", a=5.0), [[1, 1, 0], [0, 1, 1], [1, 0, 2]])
    atoms.rattle(0.15, seed=seed)
    del atoms[0]  # net charge
    return atoms


def cluster() -> Atoms:
    rng = np.random.default_rng(5)
    positions = rng.uniform(0.0, 5.0, (7, 3))
    return Atoms("Na4Cl3", positions=positions)


def energy_of(model, atoms: Atoms) -> float:
    graph = equipot.AtomicGraph.from_atoms(atoms, cutoff=1.0)
    return float(model(graph).energy[0])


CASES = {
    "ewald": (salt, {"method": "ewald", "accuracy": 1e-10}),
    "pme": (salt, {"method": "pme", "accuracy": 1e-8, "order": 8}),
    "pme-gaussian": (salt, {"method": "pme", "smearing": 1.0, "accuracy": 1e-8}),
    "ewald-yukawa": (salt, {"method": "ewald", "kappa": 0.6, "smearing": 0.8, "cutoff": 6.0}),
    "direct": (cluster, {"method": "direct"}),
    "direct-gaussian": (cluster, {"method": "direct", "smearing": 1.0, "kappa": 0.3}),
}


def directions(atoms: Atoms, count: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=(len(atoms), 3)) for _ in range(count)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_forces_and_stress_match_finite_differences(case):
    """Directional derivatives: −F·v = dE(r + t v)/dt and σ:ε = dE(strain t ε)/dt / V."""
    build, options = CASES[case]
    atoms = build()
    model = FixedCharges(CHARGES, **options)
    graph = equipot.AtomicGraph.from_atoms(atoms, cutoff=1.0)
    periodic = bool(atoms.pbc.all())
    pred = equipot.predict(model, graph, forces=True, stress=periodic)
    h = 1e-5
    for v in directions(atoms):
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions += sign * h * v
            shifted.append(energy_of(model, moved))
        slope = (shifted[0] - shifted[1]) / (2 * h)
        assert -float((pred.forces.detach().numpy() * v).sum()) == pytest.approx(slope, abs=1e-7)
    if periodic:
        rng = np.random.default_rng(8)
        for _ in range(2):
            strain = rng.normal(size=(3, 3))
            strain = 0.5 * (strain + strain.T)
            shifted = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.set_cell(atoms.cell.array @ (np.eye(3) + sign * h * strain), scale_atoms=True)
                shifted.append(energy_of(model, moved))
            slope = (shifted[0] - shifted[1]) / (2 * h) / atoms.get_volume()
            predicted = float((pred.stress[0].detach().numpy() * strain).sum())
            assert predicted == pytest.approx(slope, abs=1e-9)


@pytest.mark.parametrize("case", ["ewald", "pme", "direct-gaussian"])
def test_hessian_matches_finite_differences_of_forces(case):
    build, options = CASES[case]
    atoms = build()
    model = FixedCharges(CHARGES, **options)
    graph = equipot.AtomicGraph.from_atoms(atoms, cutoff=1.0)
    hessian = equipot.hessian_from_graph(model, graph).detach().numpy()
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-9)
    h = 1e-5
    for v in directions(atoms):
        grads = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions += sign * h * v
            g = equipot.AtomicGraph.from_atoms(moved, cutoff=1.0)
            grads.append(-equipot.predict(model, g).forces.detach().numpy().reshape(-1))
        np.testing.assert_allclose(
            hessian @ v.reshape(-1), (grads[0] - grads[1]) / (2 * h), atol=1e-6
        )


def test_mesh_forces_are_continuous_across_mesh_planes():
    """B-splines of order p are C^{p−2}: the force on an atom moved through a mesh plane
    changes smoothly (interpolation schemes of lower continuity jump there)."""
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.1, seed=1)
    model = FixedCharges(CHARGES, method="pme", smearing=1.0, accuracy=1e-4, order=4)
    _, _, k_cut = model.options.splitting()
    cell = torch.as_tensor(atoms.cell.array)
    mesh = mesh_shape(cell, k_cut, 4, default_oversampling(1e-4, 4))[0]
    plane = 5.64 * 3 / mesh
    forces = []
    for dx in (-1e-7, 1e-7, -2e-7, 2e-7):
        moved = atoms.copy()
        moved.positions[0, 0] = plane + dx
        graph = equipot.AtomicGraph.from_atoms(moved, cutoff=1.0)
        forces.append(equipot.predict(model, graph).forces[0, 0].item())
    jump = abs(forces[1] - forces[0])
    slope = abs(forces[3] - forces[2]) / 2  # change over the same step away from the plane
    assert jump <= 2 * slope + 1e-9
