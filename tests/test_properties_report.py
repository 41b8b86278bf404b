"""The fcc Cu side-by-side property table (for `equipot demo`): two different potentials, each
column checked against direct calls of the property routines (other cell sizes)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from equipot.properties.defects import vacancy_formation_energy
from equipot.properties.phonons import compute_phonons
from equipot.properties.report import copper_property_table


def _lj():
    """Lennard-Jones copper (σ, ε of Halicioglu and Pound), smoothly cut off."""
    return LennardJones(sigma=2.338, epsilon=0.4093, rc=6.0, smooth=True)


def _a0_by_scan(calc, guess: float) -> float:
    """Lattice constant from a quartic through E(a) (independent of the table's relaxation)."""
    a = np.linspace(0.99 * guess, 1.01 * guess, 9)
    energies = []
    for value in a:
        atoms = bulk("Cu", "fcc", a=value)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    fit = np.polynomial.Polynomial.fit(a, energies, 4)
    roots = fit.deriv().roots()
    real = roots[np.abs(roots.imag) < 1e-9].real
    return float(real[np.argmin(np.abs(real - guess))])


def test_copper_table_of_two_potentials_against_direct_calls():
    rows, text = copper_property_table(_lj(), EMT())
    keys = [r["key"] for r in rows]
    assert keys == [
        "a0", "nu_X_TA", "nu_X_LA", "nu_L_TA", "nu_L_LA",
        "C11", "C12", "C44", "gamma_111", "E_vac",
    ]  # fmt: skip
    by = {r["key"]: r for r in rows}
    for r in rows:
        assert r["difference"] == r["value"] - r["reference"]
        assert r["relative"] == pytest.approx(r["difference"] / r["reference"])
        assert abs(r["relative"]) > 0.005, r  # two different potentials really differ
    # reference column: EMT's own Cu
    assert by["a0"]["reference"] == pytest.approx(3.5898, abs=1e-3)
    assert by["C11"]["reference"] == pytest.approx(172.6, rel=0.03)
    # model column: Lennard-Jones copper, by other routes
    a0 = by["a0"]["value"]
    assert a0 == pytest.approx(_a0_by_scan(_lj(), a0), abs=2e-3)
    unit = bulk("Cu", "fcc", a=a0)
    nu = np.sort(compute_phonons(unit, _lj(), (4, 4, 4)).frequencies([(0.5, 0, 0.5)])[0])
    assert nu[0] == pytest.approx(by["nu_X_TA"]["value"], abs=2e-3)
    assert nu[2] == pytest.approx(by["nu_X_LA"]["value"], abs=2e-3)
    vacancy = vacancy_formation_energy(
        bulk("Cu", "fcc", a=a0, cubic=True), _lj(), supercell=(3, 3, 3), relax_bulk=False
    )
    assert vacancy.energy == pytest.approx(by["E_vac"]["value"], abs=0.03)  # 32 vs 108 sites
    assert "ν(X) TA" in text and "γ(111)" in text and "EMT" in text
    assert text.count("\n") == len(rows) + 1
