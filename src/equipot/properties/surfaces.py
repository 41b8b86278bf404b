"""Surface energies γ(hkl) of low-index slabs, with slab-thickness and vacuum convergence.

    γ = (E_slab − N_slab · ε_bulk) / (2 A)

with ε_bulk the energy per atom of the relaxed bulk, A = |a × b| the in-plane cell area and
two identical (symmetric) surfaces per slab. The slab is cut from the relaxed bulk with
``ase.build.surface`` (Miller indices refer to the bulk cell you pass: give the conventional
cubic cell for the usual cubic indices), periodic in all directions with vacuum along the
normal, and its ions are relaxed at fixed cell. Results in eV/Å² and J/m².
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms, units
from ase.build import surface

from equipot.progress import progress_iter
from equipot.properties.hessians import Source, as_calculator
from equipot.properties.relax import relax

EV_A2_TO_J_M2 = units._e * 1e20


@dataclass
class SurfaceEnergy:
    miller: tuple[int, int, int]
    layers: int
    vacuum: float
    n_atoms: int
    area: float  # Å²
    slab_energy: float  # eV, relaxed
    unrelaxed_energy: float  # eV
    bulk_energy_per_atom: float  # eV
    gamma: float  # eV/Å², relaxed
    gamma_unrelaxed: float  # eV/Å²

    @property
    def gamma_j_m2(self) -> float:
        return self.gamma * EV_A2_TO_J_M2

    def as_dict(self) -> dict:
        return {**asdict(self), "gamma_J_m2": self.gamma_j_m2}


def relaxed_bulk(bulk: Atoms, source: Source, fmax: float = 1e-4) -> tuple[Atoms, float]:
    """(bulk relaxed in cell and positions, its energy per atom in eV)."""
    relaxed = relax(bulk, source, fmax=fmax, cell=True)
    return relaxed, relaxed.get_potential_energy() / len(relaxed)


def convert_miller(miller, from_cell, to_cell) -> tuple[int, int, int]:
    """Miller indices of the plane (hkl) of ``from_cell`` in the basis of ``to_cell``.

    The plane normal is n = h·b1 + k·b2 + l·b3 (reciprocal vectors of ``from_cell``); its
    indices in ``to_cell`` are a'_i·n, scaled to the smallest integers. For fcc, (100) of the
    cubic cell is (011) of ASE's primitive cell and (111) stays (111).
    """
    from math import gcd

    normal = np.asarray(miller, dtype=np.float64) @ np.linalg.inv(np.asarray(from_cell)).T
    indices = np.asarray(to_cell, dtype=np.float64) @ normal
    indices /= np.abs(indices[np.abs(indices) > 1e-8]).min()
    for k in range(1, 25):
        scaled = k * indices
        if np.allclose(scaled, np.round(scaled), atol=1e-6):
            whole = [int(v) for v in np.round(scaled)]
            divisor = gcd(gcd(abs(whole[0]), abs(whole[1])), abs(whole[2]))
            return tuple(v // divisor for v in whole)
    raise ValueError(f"plane {tuple(miller)} has no small Miller indices in the target cell")


def make_slab(bulk: Atoms, miller, layers: int, vacuum: float) -> Atoms:
    """Slab of ``layers`` repeat units of ``bulk`` along (hkl), ``vacuum`` Å on each side."""
    # periodic=False: with periodic=True (ASE 3.2x) some even layer counts come out with
    # misplaced boundary atoms; the vacuum already separates the periodic images
    slab = surface(bulk, tuple(int(m) for m in miller), layers, vacuum=vacuum, periodic=False)
    slab.pbc = True
    if _min_distance(slab) < 0.99 * _min_distance(bulk):
        raise ValueError(f"slab {tuple(miller)} with {layers} layers has overlapping atoms")
    return slab


def _min_distance(atoms: Atoms) -> float:
    from ase.neighborlist import neighbor_list

    cutoff = 2.0 * (atoms.get_volume() / len(atoms)) ** (1 / 3) if atoms.pbc.all() else 6.0
    distances = neighbor_list("d", atoms, cutoff)
    return float(distances.min()) if len(distances) else np.inf


def surface_energy(
    bulk: Atoms,
    source: Source,
    miller,
    *,
    layers: int = 6,
    vacuum: float = 8.0,
    relax_slab: bool = True,
    fmax: float = 1e-3,
    bulk_energy_per_atom: float | None = None,
    relax_bulk: bool = True,
) -> SurfaceEnergy:
    """γ(hkl) of a slab cut from ``bulk`` (relaxed first unless ``relax_bulk=False``).

    Pass ``bulk_energy_per_atom`` with an already relaxed ``bulk`` to skip the bulk step.
    """
    calc = as_calculator(source)
    if bulk_energy_per_atom is None:
        if relax_bulk:
            bulk, bulk_energy_per_atom = relaxed_bulk(bulk, calc)
        else:
            reference = bulk.copy()
            reference.calc = calc
            bulk_energy_per_atom = reference.get_potential_energy() / len(reference)
    slab = make_slab(bulk, miller, layers, vacuum)
    slab.calc = calc
    unrelaxed = slab.get_potential_energy()
    energy = relax(slab, calc, fmax=fmax).get_potential_energy() if relax_slab else unrelaxed
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    n = len(slab)
    return SurfaceEnergy(
        miller=tuple(int(m) for m in miller),
        layers=layers,
        vacuum=vacuum,
        n_atoms=n,
        area=area,
        slab_energy=energy,
        unrelaxed_energy=unrelaxed,
        bulk_energy_per_atom=bulk_energy_per_atom,
        gamma=(energy - n * bulk_energy_per_atom) / (2 * area),
        gamma_unrelaxed=(unrelaxed - n * bulk_energy_per_atom) / (2 * area),
    )


def surface_energy_convergence(
    bulk: Atoms,
    source: Source,
    miller,
    *,
    layers=(4, 6, 8),
    vacuums=(8.0, 12.0),
    tolerance: float = 1e-3,
    fmax: float = 1e-3,
    progress: bool = False,
) -> dict:
    """γ(hkl) over slab thicknesses (at the first vacuum) and vacuums (at the thickest slab).

    ``converged`` is true when the last step in each series changes γ by less than
    ``tolerance`` eV/Å². ``gamma`` is the value at the thickest slab and largest vacuum.
    """
    calc = as_calculator(source)
    bulk, e_bulk = relaxed_bulk(bulk, calc)
    kw = {"bulk_energy_per_atom": e_bulk, "fmax": fmax}
    jobs = [(n, vacuums[0]) for n in layers] + [(layers[-1], v) for v in vacuums[1:]]
    results = {}
    for n, v in progress_iter(jobs, f"γ{tuple(miller)}", enabled=progress):
        results[(n, v)] = surface_energy(bulk, calc, miller, layers=n, vacuum=v, **kw)
    thickness = [results[(n, vacuums[0])] for n in layers]
    vacuum = [results[(layers[-1], v)] for v in vacuums]
    d_layers = abs(thickness[-1].gamma - thickness[-2].gamma) if len(layers) > 1 else 0.0
    d_vacuum = abs(vacuum[-1].gamma - vacuum[-2].gamma) if len(vacuums) > 1 else 0.0
    return {
        "miller": tuple(int(m) for m in miller),
        "gamma": vacuum[-1].gamma,
        "gamma_J_m2": vacuum[-1].gamma_j_m2,
        "thickness_series": [r.as_dict() for r in thickness],
        "vacuum_series": [r.as_dict() for r in vacuum],
        "delta_layers": d_layers,
        "delta_vacuum": d_vacuum,
        "converged": bool(d_layers < tolerance and d_vacuum < tolerance),
        "tolerance": tolerance,
    }
