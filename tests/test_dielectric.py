"""Crystal response: ε∞, ε₀ symmetric with the point group; piezoelectric tensor vs strain."""

from __future__ import annotations

import numpy as np
import pytest
import spglib
import torch
from ase.build import bulk
from ase.data import atomic_numbers

import equipot
from equipot.physics.fields import EPSILON_0, field_response
from equipot.properties.dielectric import VOIGT, dielectric

HEADS = {"dipole": {}, "polarizability": {}}


def model_for(atoms, seed, charges=(1.0, -1.0)):
    """A random model with heads of unit-size inputs and ionic charges (an untrained model's
    heads would give tiny numbers)."""
    elements = sorted(set(atoms.get_chemical_symbols()), key=lambda e: atomic_numbers[e])
    model = equipot.build_model(
        elements, r_max=3.5, l_max=2, channels=8, num_layers=2, correlation=2, seed=seed,
        radial_hidden=[16, 16], avg_num_neighbors=8.0, heads=HEADS,
    )  # fmt: skip
    with torch.no_grad():
        _, features = model.local_energies(equipot.AtomicGraph.from_atoms(atoms, 3.5))
        model.heads.normalise_inputs(features)
        head = model.heads.heads["dipole"]
        head.charges.copy_(torch.tensor(charges, dtype=torch.float64) / head.config.scale)
    return model


@pytest.fixture(scope="module")
def rocksalt():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    return model_for(atoms, 1), atoms


@pytest.fixture(scope="module")
def zincblende():
    atoms = bulk("ZnS", "zincblende", a=5.41)
    return model_for(atoms, 2, charges=(-0.8, 0.8)), atoms


def point_group(atoms) -> list[np.ndarray]:
    """Cartesian rotations of the crystal's point group (spglib)."""
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    rotations = spglib.get_symmetry(cell, symprec=1e-5)["rotations"]
    lattice = atoms.cell.array.T
    return [lattice @ r @ np.linalg.inv(lattice) for r in rotations]


def test_cubic_dielectric_tensors_isotropic(rocksalt):
    model, atoms = rocksalt
    result = dielectric(model, atoms)
    for eps in (result.epsilon_inf, result.epsilon_0):
        assert np.abs(eps - eps.T).max() < 1e-12
        assert np.abs(eps - np.trace(eps) / 3 * np.eye(3)).max() < 1e-10
    assert abs(result.epsilon_0[0, 0] - result.epsilon_inf[0, 0]) > 1e-6  # an ionic part
    # centrosymmetric: no piezoelectricity
    assert np.abs(result.piezo).max() < 1e-10
    # Born charges obey the sum rule and the site symmetry (isotropic in rock salt)
    assert np.abs(result.born_charges.sum(0)).max() < 1e-12
    for z in result.born_charges:
        assert np.abs(z - np.trace(z) / 3 * np.eye(3)).max() < 1e-10
    # ε∞ is 1 + α/(ε₀Ω) with α the field derivative
    graph = equipot.AtomicGraph.from_atoms(atoms, 3.5)
    alpha = field_response(model, graph, born_charges=False).polarizability[0].detach().numpy()
    assert np.allclose(result.epsilon_inf, np.eye(3) + alpha / (EPSILON_0 * atoms.get_volume()))


def test_point_group_respected_in_a_supercell(zincblende):
    model, atoms = zincblende
    cell = atoms.repeat((2, 1, 1))
    result = dielectric(model, cell)
    for rotation in point_group(cell):
        for eps in (result.epsilon_inf, result.epsilon_0):
            assert np.abs(rotation @ eps @ rotation.T - eps).max() < 1e-10
        rotated = np.einsum("ai,bj,ck,ijk->abc", rotation, rotation, rotation, result.piezo)
        assert np.abs(rotated - result.piezo).max() < 1e-10


def test_zincblende_piezoelectric_tensor(zincblende):
    """−43m: only e_14 = e_25 = e_36 ≠ 0; clamped and internal-strain parts against finite
    differences of the polarisation of strained (and relaxed) cells."""
    model, atoms = zincblende
    result = dielectric(model, atoms)
    voigt = np.stack([result.piezo[:, j, k] for j, k in VOIGT], axis=1)
    expected = np.zeros((3, 6))
    expected[0, 3] = expected[1, 4] = expected[2, 5] = voigt[0, 3]
    assert abs(voigt[0, 3]) > 1e-6
    assert np.abs(voigt - expected).max() < 1e-10

    h = 1e-4
    j, k = 1, 2  # e_x,yz

    def polarization(s: float, relax: bool) -> np.ndarray:
        strain = np.eye(3)
        strain[j, k] = strain[k, j] = s
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        if relax:  # one Newton step is exact to O(s²) for the linear response
            fc = result.force_constants
            strained.calc = equipot.EquipotCalculator(model)
            forces = strained.get_forces().reshape(-1)
            strained.positions += (np.linalg.pinv(fc, rcond=1e-10) @ forces).reshape(-1, 3)
        graph = equipot.AtomicGraph.from_atoms(strained, 3.5)
        mu = field_response(model, graph, polarizability=False, born_charges=False).dipole
        return mu[0].detach().numpy() / strained.get_volume()

    for relax, target in ((False, result.piezo_clamped), (True, result.piezo)):
        improper = (polarization(h, relax) - polarization(-h, relax)) / (4 * h)  # ∂P/∂ε_jk
        p0 = polarization(0.0, False)
        proper = improper - 0.5 * (np.eye(3)[:, j] * p0[k] + np.eye(3)[:, k] * p0[j])
        assert np.abs(proper - target[:, j, k]).max() < 1e-7, relax


def test_piezo_independent_of_the_polarisation_branch(zincblende):
    model, atoms = zincblende
    ref = dielectric(model, atoms)
    shifted = atoms.copy()
    shifted.positions[1] += atoms.cell[0] - atoms.cell[2]  # same crystal, other image
    other = dielectric(model, shifted)
    assert np.abs(other.dipole - ref.dipole).max() > 1e-3  # μ moved by a quantum …
    assert np.abs(other.piezo - ref.piezo).max() < 1e-10  # … e did not
    assert np.abs(other.epsilon_0 - ref.epsilon_0).max() < 1e-10


def test_refuses_open_structures_and_models_without_dipoles(rocksalt):
    model, atoms = rocksalt
    molecule = atoms.copy()
    molecule.pbc = False
    with pytest.raises(ValueError, match="periodic in all 3"):
        dielectric(model, molecule)
    plain = equipot.build_model(["Na", "Cl"], r_max=3.5, channels=4, radial_hidden=[8])
    with pytest.raises(ValueError, match="need a model with a 'dipole' head"):
        dielectric(plain, atoms)
