"""The fcc Cu side-by-side property table (for `equipot demo`)."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from equipot.properties.defects import vacancy_formation_energy
from equipot.properties.phonons import compute_phonons
from equipot.properties.report import copper_property_table


def test_copper_table_against_itself_and_direct_calls():
    rows, text = copper_property_table(EMT(), EMT())
    keys = [r["key"] for r in rows]
    assert keys == [
        "a0", "nu_X_TA", "nu_X_LA", "nu_L_TA", "nu_L_LA",
        "C11", "C12", "C44", "gamma_111", "E_vac",
    ]  # fmt: skip
    values = {r["key"]: r["value"] for r in rows}
    assert all(r["difference"] == 0.0 for r in rows)
    assert abs(values["a0"] - 3.5898) < 1e-3  # EMT's Cu lattice constant
    # independent of the table's code path: a 4×4×4 supercell and a 3×3×3 vacancy cell
    unit = bulk("Cu", "fcc", a=values["a0"])
    nu = np.sort(compute_phonons(unit, EMT(), (4, 4, 4)).frequencies([(0.5, 0, 0.5)])[0])
    assert abs(nu[0] - values["nu_X_TA"]) < 1e-3 and abs(nu[2] - values["nu_X_LA"]) < 1e-3
    vacancy = vacancy_formation_energy(
        bulk("Cu", "fcc", a=values["a0"], cubic=True), EMT(), supercell=(3, 3, 3), relax_bulk=False
    )
    assert abs(vacancy.energy - values["E_vac"]) < 0.02  # 32 vs 108 sites
    assert 1.0 < values["gamma_111"] < 1.1  # J/m²
    assert "ν(X) TA" in text and "γ(111)" in text and "EMT" in text
    assert text.count("\n") == len(rows) + 1
