"""fcc Cu properties side by side for two energy functions (a trained model and, e.g., EMT).

Each source is evaluated at its own equilibrium lattice constant a0 (cell relaxed):
phonon frequencies at X and L from a 2×2×2 supercell of the primitive cell (commensurate with
both points, so exact there), C11/C12/C44 from stress–strain fits on the primitive cell,
γ(hkl) from relaxed slabs of one atom per layer, and the relaxed vacancy formation energy in a
2×2×2 conventional supercell (32 sites).
"""

from __future__ import annotations

import numpy as np
from ase.build import bulk

from equipot.properties.defects import vacancy_formation_energy
from equipot.properties.elastic import elastic_constants
from equipot.properties.hessians import Source, as_calculator
from equipot.properties.phonons import compute_phonons
from equipot.properties.surfaces import EV_A2_TO_J_M2, convert_miller, surface_energy

X_POINT = (0.5, 0.0, 0.5)  # in ASE's primitive fcc reciprocal basis
L_POINT = (0.5, 0.5, 0.5)


def copper_properties(
    source: Source,
    *,
    surfaces=((1, 1, 1),),
    a_guess: float = 3.6,
    phonon_supercell=(2, 2, 2),
    slab_layers: int = 6,
    vacuum: float = 8.0,
    vacancy_supercell=(2, 2, 2),
) -> dict[str, float]:
    """a0, ν(X), ν(L) (TA, LA), C11, C12, C44, γ(hkl) and E_vac of fcc Cu for ``source``.

    ``surfaces`` are Miller indices of the conventional cubic cell.
    """
    calc = as_calculator(source)
    from equipot.properties.surfaces import relaxed_bulk

    primitive, e_atom = relaxed_bulk(bulk("Cu", "fcc", a=a_guess), calc)
    a0 = float(np.sqrt(2.0) * primitive.cell.lengths()[0])
    primitive = bulk("Cu", "fcc", a=a0)  # the standard orientation, for the q-point labels
    out: dict[str, float] = {"a0": a0}

    phonons = compute_phonons(primitive, calc, phonon_supercell)
    for name, q in (("X", X_POINT), ("L", L_POINT)):
        nu = np.sort(phonons.frequencies([q])[0])
        out[f"nu_{name}_TA"], out[f"nu_{name}_LA"] = float(nu[:2].mean()), float(nu[2])

    c = elastic_constants(primitive, calc, methods=("stress",), relax_cell=False).C
    out["C11"] = float(np.mean([c[0, 0], c[1, 1], c[2, 2]]))
    out["C12"] = float(np.mean([c[0, 1], c[1, 2], c[0, 2]]))
    out["C44"] = float(np.mean([c[3, 3], c[4, 4], c[5, 5]]))

    cubic = bulk("Cu", "fcc", a=a0, cubic=True)
    for miller in surfaces:
        indices = convert_miller(miller, cubic.cell, primitive.cell)
        gamma = surface_energy(
            primitive, calc, indices, layers=slab_layers, vacuum=vacuum, bulk_energy_per_atom=e_atom
        )
        out["gamma_" + "".join(str(m) for m in miller)] = gamma.gamma * EV_A2_TO_J_M2
    vacancy = vacancy_formation_energy(cubic, calc, supercell=vacancy_supercell, relax_bulk=False)
    out["E_vac"] = float(vacancy.energy)
    return out


LABELS = {
    "a0": ("a0", "Å"),
    "nu_X_TA": ("ν(X) TA", "THz"),
    "nu_X_LA": ("ν(X) LA", "THz"),
    "nu_L_TA": ("ν(L) TA", "THz"),
    "nu_L_LA": ("ν(L) LA", "THz"),
    "C11": ("C11", "GPa"),
    "C12": ("C12", "GPa"),
    "C44": ("C44", "GPa"),
    "E_vac": ("E_vac", "eV"),
}


def _label(key: str) -> tuple[str, str]:
    if key.startswith("gamma_"):
        return f"γ({key[6:]})", "J/m²"
    return LABELS.get(key, (key, ""))


def property_rows(values: dict[str, float], reference: dict[str, float]) -> list[dict]:
    """One row per property: value, reference, absolute and relative difference."""
    rows = []
    for key, value in values.items():
        ref = reference[key]
        name, unit = _label(key)
        rows.append(
            {
                "key": key,
                "property": name,
                "unit": unit,
                "value": value,
                "reference": ref,
                "difference": value - ref,
                "relative": (value - ref) / ref if ref else float("nan"),
            }
        )
    return rows


def format_rows(rows: list[dict], names=("model", "reference")) -> str:
    """A plain-text table of :func:`property_rows`."""
    header = f"{'property':<10} {'unit':<5} {names[0]:>10} {names[1]:>10} {'diff':>9} {'rel':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['property']:<10} {r['unit']:<5} {r['value']:>10.4f} {r['reference']:>10.4f} "
            f"{r['difference']:>+9.4f} {100 * r['relative']:>+7.2f}%"
        )
    return "\n".join(lines)


def copper_property_table(
    calculator_or_model: Source, reference_calculator: Source, **options
) -> tuple[list[dict], str]:
    """fcc Cu properties of a model next to a reference (e.g. EMT): (rows, text table).

    ``options`` go to :func:`copper_properties` (e.g. ``surfaces=((1, 0, 0), (1, 1, 1))``).
    """
    reference_calculator = as_calculator(reference_calculator)
    values = copper_properties(calculator_or_model, **options)
    reference = copper_properties(reference_calculator, **options)
    rows = property_rows(values, reference)
    return rows, format_rows(rows, names=("model", type(reference_calculator).__name__))
