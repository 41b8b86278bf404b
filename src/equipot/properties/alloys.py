"""Binary alloys: random and ordered supercells, relaxed, and their mixing energies.

For compositions x (fraction of B) on a lattice (fcc, bcc): random occupations of an
n×n×n conventional supercell (Vegard's-law lattice constant to start), each relaxed in its
positions and cell; plus the ordered prototypes (fcc: L1₂ A₃B and AB₃, L1₀ AB; bcc: B2).
ΔE_mix(x) = mean over the random cells of ΔE_f (see :mod:`equipot.properties.hull`); the
convex hull uses every structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator


@dataclass
class AlloyEntry:
    label: str
    x: float  # fraction of B
    energy_per_atom: float  # eV/atom, relaxed
    formation_energy: float = 0.0  # eV/atom
    volume_per_atom: float = 0.0


def relax_cell(atoms: Atoms, calc: Calculator, fmax: float = 0.01, steps: int = 300) -> Atoms:
    """Positions and cell relaxed together (ASE's FrechetCellFilter + FIRE)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms = atoms.copy()
    atoms.calc = calc
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=steps)
    return atoms


def _guess(element: str, lattice: str) -> float:
    from ase.data import atomic_numbers, reference_states

    ref = reference_states[atomic_numbers[element]] or {}
    if ref.get("symmetry") == lattice and "a" in ref:
        return float(ref["a"])
    return 4.0 if lattice == "fcc" else 3.2


def ordered_structures(a: str, b: str, lattice: str, lattice_a: float) -> list[tuple]:
    """(label, atoms) of the ordered prototypes of the lattice."""
    cell = bulk(a, lattice, a=lattice_a, cubic=True)
    out = []
    if lattice == "fcc":  # 4 sites: corner + 3 face centres
        prototypes = (
            (f"L1_2 {a}{b}3", [a, b, b, b]),
            (f"L1_0 {a}{b}", [a, a, b, b]),
            (f"L1_2 {a}3{b}", [b, a, a, a]),
        )
        for label, pattern in prototypes:
            s = cell.copy()
            s.symbols = pattern
            out.append((label, s))
    elif lattice == "bcc":
        s = cell.copy()
        s.symbols = [a, b]
        out.append((f"B2 {a}{b}", s))
    return out


def random_cell(a: str, b: str, x: float, lattice: str, lattice_a: float, size: int, rng):
    cell = bulk(a, lattice, a=lattice_a, cubic=True) * (size, size, size)
    n_b = round(x * len(cell))
    symbols = np.array([a] * len(cell))
    symbols[rng.choice(len(cell), n_b, replace=False)] = b
    cell.symbols = list(symbols)
    return cell


def mixing_energies(
    calc: Calculator,
    a: str,
    b: str,
    *,
    lattice: str = "fcc",
    x_values=(0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875),
    size: int = 2,
    samples: int = 3,
    seed: int = 0,
    fmax: float = 0.01,
    progress: bool = False,
) -> dict:
    """Relaxed energies of the pure elements, random cells and ordered prototypes, ΔE_mix(x)
    and the hull (see module docstring). Energies in eV/atom."""
    from equipot.progress import progress_iter
    from equipot.properties.hull import formation_energy, hull_of_entries

    rng = np.random.default_rng(seed)
    pure = {}
    for element in (a, b):
        relaxed = relax_cell(
            bulk(element, lattice, a=_guess(element, lattice), cubic=True), calc, fmax
        )
        pure[element] = {
            "energy_per_atom": relaxed.get_potential_energy() / len(relaxed),
            "lattice_constant": float(np.cbrt(relaxed.get_volume())),  # conventional cube
        }
    a_a, a_b = pure[a]["lattice_constant"], pure[b]["lattice_constant"]
    todo = [
        (
            f"random x={x:.3f} #{k}",
            x,
            random_cell(a, b, x, lattice, (1 - x) * a_a + x * a_b, size, rng),
        )
        for x in x_values
        for k in range(samples)
    ]
    todo += [
        (label, _fraction(s, b), s)
        for label, s in ordered_structures(a, b, lattice, 0.5 * (a_a + a_b))
    ]
    entries = []
    for label, x, atoms in progress_iter(todo, f"relaxing {a}-{b}", enabled=progress, leave=False):
        relaxed = relax_cell(atoms, calc, fmax)
        e = relaxed.get_potential_energy() / len(relaxed)
        entries.append(
            AlloyEntry(label, float(x), float(e), 0.0, relaxed.get_volume() / len(relaxed))
        )
    ea, eb = pure[a]["energy_per_atom"], pure[b]["energy_per_atom"]
    for entry in entries:
        entry.formation_energy = float(formation_energy(entry.x, entry.energy_per_atom, ea, eb))
    random_entries = [e for e in entries if e.label.startswith("random")]
    curve = {}
    for x in x_values:
        values = [e.formation_energy for e in random_entries if abs(e.x - x) < 1e-9]
        curve[f"{x:.4f}"] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "values": values,
        }
    hull = hull_of_entries([e.x for e in entries], [e.formation_energy for e in entries])
    return {
        "elements": [a, b],
        "lattice": lattice,
        "pure": pure,
        "entries": [e.__dict__ for e in entries],
        "mixing_energy": curve,
        "hull": hull,
        "hull_labels": [
            entries[i].label if i >= 0 else (a if i == -2 else b) for i in hull["vertex_index"]
        ],
    }


def _fraction(atoms: Atoms, b: str) -> float:
    return float(np.mean(np.array(atoms.get_chemical_symbols()) == b))
