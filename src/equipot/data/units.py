"""Unit names in data files → equipot's units (eV, Å, eV/Å, eV/Å³).

A unit is written as it reads: ``"kcal/mol"``, ``"kcal/mol/Å"``, ``"Hartree/Bohr"``,
``"eV/Å^3"``, ``"GPa"``. :func:`to_ev` and friends return the factor that multiplies a value
in that unit to give it in equipot's unit.
"""

from __future__ import annotations

ENERGY = {
    "eV": 1.0,
    "meV": 1e-3,
    "kcal/mol": 0.0433641,  # the rMD17 convention (1 kcal/mol = 0.0433641 eV)
    "kJ/mol": 0.01036427,
    "Hartree": 27.211386245988,
    "Ha": 27.211386245988,
    "Ry": 13.605693122994,
}
LENGTH = {
    "Å": 1.0,
    "Ang": 1.0,
    "Angstrom": 1.0,
    "A": 1.0,
    "Bohr": 0.529177210903,
    "nm": 10.0,
}
# pressure units for stresses (1 eV/Å³ = 160.21766 GPa)
PRESSURE = {"GPa": 1.0 / 160.21766208, "kbar": 0.1 / 160.21766208, "bar": 1e-4 / 160.21766208}


def _lookup(table: dict[str, float], name: str, what: str) -> float:
    key = name.strip()
    for candidate, factor in table.items():
        if key.lower() == candidate.lower():
            return factor
    raise ValueError(f"unknown {what} unit {name!r}; known: {', '.join(table)}")


def energy_factor(unit: str) -> float:
    """Factor converting an energy in ``unit`` to eV."""
    return _lookup(ENERGY, unit, "energy")


def length_factor(unit: str) -> float:
    """Factor converting a length in ``unit`` to Å."""
    return _lookup(LENGTH, unit, "length")


def force_factor(unit: str) -> float:
    """Factor converting a force in ``unit`` (``"<energy>/<length>"``) to eV/Å."""
    energy, sep, length = unit.strip().rpartition("/")
    if not sep:
        raise ValueError(f"force unit {unit!r} must read '<energy>/<length>', e.g. 'eV/Å'")
    return energy_factor(energy) / length_factor(length)


def stress_factor(unit: str) -> float:
    """Factor converting a stress in ``unit`` (a pressure, or ``"<energy>/<length>^3"``)."""
    name = unit.strip()
    for candidate, factor in PRESSURE.items():
        if name.lower() == candidate.lower():
            return factor
    energy, sep, volume = name.rpartition("/")
    for suffix in ("^3", "**3", "3", "³"):
        if sep and volume.endswith(suffix):
            return energy_factor(energy) / length_factor(volume[: -len(suffix)]) ** 3
    raise ValueError(
        f"unknown stress unit {unit!r}: use a pressure ({', '.join(PRESSURE)}) or "
        "'<energy>/<length>^3', e.g. 'eV/Å^3'"
    )
