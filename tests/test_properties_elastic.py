"""Elastic constants: energy–strain vs stress–strain fits, symmetry relations, EOS, VRH."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.units import GPa

from equipot.properties.elastic import (
    born_stability,
    elastic_constants,
    strained,
    vrh_moduli,
)


@pytest.fixture(scope="module")
def fcc():
    return elastic_constants(bulk("Cu", "fcc", a=3.6), EMT())


@pytest.fixture(scope="module")
def hcp():
    return elastic_constants(bulk("Cu", "hcp", a=2.55, c=4.16), EMT())


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_fcc_energy_and_stress_fits_agree(fcc):
    assert np.abs(fcc.residual_stress).max() < 1e-2  # GPa: the reference cell is relaxed
    assert _relative_gap(fcc.C_energy, fcc.C_stress) < 0.01
    c = fcc.C_stress
    c11, c12, c44 = c[0, 0], c[0, 1], c[3, 3]
    assert 100 < c11 < 250 and 50 < c12 < c11 and 40 < c44 < 150
    cubic = np.zeros((6, 6))
    cubic[:3, :3] = c12
    cubic[np.arange(3), np.arange(3)] = c11
    cubic[np.arange(3, 6), np.arange(3, 6)] = c44
    assert np.abs(c - cubic).max() < 1e-3 * c11


def test_fcc_bulk_modulus_matches_equation_of_state(fcc):
    """K = (C11 + 2 C12)/3 against an independent E(V) fit (ase.eos)."""
    reference = fcc.reference
    volumes, energies = [], []
    for scale in np.linspace(0.99, 1.01, 7):
        atoms = reference.copy()
        atoms.set_cell(reference.cell * scale, scale_atoms=True)
        atoms.calc = EMT()
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    _, _, k_eos = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    k_voigt = vrh_moduli(fcc.C_stress)["K_V"]
    assert abs(k_voigt - k_eos / GPa) < 0.01 * k_voigt


def test_hcp_relaxed_ion_constants(hcp):
    """Two atoms per cell: internal relaxation matters; hexagonal C66 = (C11 − C12)/2."""
    assert _relative_gap(hcp.C_energy, hcp.C_stress) < 0.01
    c = hcp.C_stress
    assert abs(c[5, 5] - 0.5 * (c[0, 0] - c[0, 1])) < 0.01 * c[5, 5]
    assert abs(c[0, 0] - c[1, 1]) < 1e-3 * c[0, 0] and abs(c[3, 3] - c[4, 4]) < 1e-3 * c[3, 3]
    clamped = elastic_constants(hcp.reference, EMT(), methods=("stress",), relax_ions=False)
    # clamped ions break the hexagonal relation (EMT Cu: C66 ≈ 69 vs 52 GPa relaxed)
    assert clamped.C[5, 5] - c[5, 5] > 5.0


def test_vrh_and_born_stability_on_known_matrices():
    lam, mu = 60.0, 40.0  # isotropic: C11 = λ + 2μ, C12 = λ, C44 = μ
    c = np.zeros((6, 6))
    c[:3, :3] = lam
    c[np.arange(3), np.arange(3)] = lam + 2 * mu
    c[np.arange(3, 6), np.arange(3, 6)] = mu
    m = vrh_moduli(c)
    k = lam + 2 * mu / 3
    for key, value in [("K_V", k), ("K_R", k), ("G_V", mu), ("G_R", mu)]:
        assert np.isclose(m[key], value), key
    assert np.isclose(m["E_H"], mu * (3 * lam + 2 * mu) / (lam + mu))
    assert np.isclose(m["nu_H"], lam / (2 * (lam + mu)))
    assert born_stability(c)[0]
    unstable = c.copy()
    unstable[0, 1] = unstable[1, 0] = 200.0  # C12 > C11 breaks C11 − C12 > 0
    stable, eigenvalues = born_stability(unstable)
    assert not stable and eigenvalues.min() < 0


def test_strain_convention():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    sheared = strained(atoms, [0, 0, 0, 0, 0, 0.02])  # engineering γ_xy = 2 ε_xy
    assert np.allclose(sheared.cell[0], [3.6, 0.036, 0])
    assert np.allclose(sheared.get_scaled_positions(), atoms.get_scaled_positions())
    with pytest.raises(ValueError, match="methods"):
        elastic_constants(atoms, EMT(), methods=("magic",))
