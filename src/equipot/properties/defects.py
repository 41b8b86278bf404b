"""Point defects: vacancy formation energy and vacancy migration barrier.

    E_f(vac) = E(N−1, relaxed) − (N−1)/N · E(N, perfect)

for a supercell of N atoms of the relaxed bulk, the defect cell kept at the bulk volume and its
ions relaxed. The migration barrier is the climbing-image NEB energy maximum minus the initial
energy for a nearest-neighbour atom hopping into the vacancy, by equipot's batched NEB
(:func:`equipot.sim.neb.neb`; a model runs through its autograd potential, any other calculator
through the ASE adapter) or, with ``engine="ase"``, by ASE's ``ase.mep.NEB``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms
from ase.build import make_supercell

from equipot.properties.hessians import Source, as_calculator, resolve_source
from equipot.properties.phonons import supercell_matrix
from equipot.properties.relax import relax
from equipot.properties.surfaces import relaxed_bulk


@dataclass
class VacancyFormation:
    energy: float  # eV, relaxed formation energy
    unrelaxed_energy: float  # eV
    n_atoms: int  # atoms in the perfect supercell
    perfect_energy: float  # eV
    defect_energy: float  # eV, relaxed

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class VacancyMigration:
    barrier: float  # eV
    energies: np.ndarray  # (images,) eV relative to the initial state
    path: list[Atoms]
    converged: bool
    engine: str  # which NEB ran

    def as_dict(self) -> dict:
        return {
            "barrier": self.barrier,
            "energies": self.energies.tolist(),
            "converged": self.converged,
            "engine": self.engine,
        }


def _perfect_supercell(bulk: Atoms, calc, supercell, relax_bulk: bool) -> Atoms:
    if relax_bulk:
        bulk, _ = relaxed_bulk(bulk, calc)
    perfect = make_supercell(bulk, supercell_matrix(supercell), wrap=True)
    perfect.calc = calc
    return perfect


def vacancy_formation_energy(
    bulk: Atoms,
    source: Source,
    *,
    supercell=(2, 2, 2),
    index: int = 0,
    relax_bulk: bool = True,
    fmax: float = 1e-3,
) -> VacancyFormation:
    """E_f of a vacancy at supercell atom ``index`` (bulk relaxed first unless told not to)."""
    calc = as_calculator(source)
    perfect = _perfect_supercell(bulk, calc, supercell, relax_bulk)
    n = len(perfect)
    e_perfect = perfect.get_potential_energy()
    defect = perfect.copy()
    del defect[index]
    defect.calc = calc
    unrelaxed = defect.get_potential_energy()
    relaxed = relax(defect, calc, fmax=fmax).get_potential_energy()
    scale = (n - 1) / n
    return VacancyFormation(
        energy=relaxed - scale * e_perfect,
        unrelaxed_energy=unrelaxed - scale * e_perfect,
        n_atoms=n,
        perfect_energy=e_perfect,
        defect_energy=relaxed,
    )


def vacancy_migration_barrier(
    bulk: Atoms,
    source: Source,
    *,
    supercell=(2, 2, 2),
    index: int = 0,
    neighbor: int | None = None,
    images: int = 5,
    fmax: float = 0.02,
    steps: int = 1000,
    relax_bulk: bool = True,
    engine: str = "auto",
) -> VacancyMigration:
    """Barrier for the hop of ``neighbor`` (default: the nearest atom) into vacancy ``index``.

    ``engine``: ``"equipot"`` (equipot.sim.neb), ``"ase"`` (ase.mep.NEB) or ``"auto"`` (the
    first when importable).
    """
    if engine not in ("auto", "equipot", "ase"):
        raise ValueError(f"unknown NEB engine {engine!r} (auto, equipot, ase)")
    calc, model = resolve_source(source)
    perfect = _perfect_supercell(bulk, calc, supercell, relax_bulk)
    if neighbor is None:
        distances = perfect.get_distances(index, range(len(perfect)), mic=True)
        distances[index] = np.inf
        neighbor = int(np.argmin(distances))
    hop = perfect.positions[neighbor] + perfect.get_distance(neighbor, index, mic=True, vector=True)
    initial = perfect.copy()
    del initial[index]
    final = initial.copy()
    final.positions[neighbor - (1 if neighbor > index else 0)] = hop
    initial = relax(initial, calc, fmax=fmax / 4)
    final = relax(final, calc, fmax=fmax / 4)
    if engine != "ase":
        try:
            from equipot.sim.neb import neb
            from equipot.sim.potentials import ASEPotential, ModelPotential
        except ImportError:
            if engine == "equipot":
                raise
        else:
            potential = ModelPotential(model) if model is not None else ASEPotential(calc)
            band = neb(initial, final, potential, n_images=images, fmax=fmax, max_steps=steps)
            energies = np.asarray(band.energies, dtype=np.float64)
            energies = energies - energies[0]
            return VacancyMigration(
                barrier=float(energies.max()),
                energies=energies,
                path=band.images,
                converged=bool(band.converged),
                engine="equipot.sim.neb",
            )
    return _ase_neb(initial, final, calc, images, fmax, steps)


def _ase_neb(initial, final, calc, images: int, fmax: float, steps: int) -> VacancyMigration:
    from ase.mep import NEB
    from ase.optimize import FIRE

    path = [initial] + [initial.copy() for _ in range(images)] + [final]
    for image in path:
        image.calc = calc
    band = NEB(path, climb=True, allow_shared_calculator=True, method="improvedtangent")
    band.interpolate(mic=True)
    converged = bool(FIRE(band, logfile=None).run(fmax=fmax, steps=steps))
    energies = np.array([image.get_potential_energy() for image in path])
    energies -= energies[0]
    return VacancyMigration(
        barrier=float(energies.max()),
        energies=energies,
        path=path,
        converged=converged,
        engine="ase.mep.NEB",
    )
