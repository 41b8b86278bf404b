"""Reference calculators for labelling, named in the learn config, and labelling one frame.

``emt`` (ASE), ``tblite`` (GFN2-xTB by default; ``options: {method: GFN1-xTB}``), ``pyscf``
(Kohn–Sham DFT with density fitting, molecules; ``options: {xc: PBE, basis: def2-SVP}``),
``lammps`` (ASE's LAMMPSlib; options are its keyword arguments) or any
``package.module:factory`` returning an ASE calculator (called with ``options``).
"""

from __future__ import annotations

import importlib

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator


def make_calculator(name: str, options: dict | None = None) -> Calculator:
    options = dict(options or {})
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT(**options)
    if name == "tblite":
        try:
            from tblite.ase import TBLite
        except ImportError:
            raise ValueError(
                "reference 'tblite' needs the tblite package (pip install tblite)"
            ) from None
        return TBLite(**({"method": "GFN2-xTB", "verbosity": 0} | options))
    if name == "pyscf":
        return PySCFCalculator(**options)
    if name == "lammps":
        from ase.calculators.lammpslib import LAMMPSlib

        return LAMMPSlib(**options)
    module_name, sep, attr = name.partition(":")
    if not sep:
        raise ValueError(
            f"unknown reference calculator {name!r}: use emt, tblite, pyscf, lammps or "
            "package.module:factory"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"reference calculator {name!r} cannot be imported: {exc}") from None
    return factory(**options)


def label(atoms: Atoms, calculator: Calculator) -> Atoms:
    """A copy of ``atoms`` with the reference energy, forces (and stress, 3D-periodic)."""
    atoms = atoms.copy()
    atoms.calc = calculator
    results = {}
    if atoms.pbc.all() and "stress" in calculator.implemented_properties:
        results["stress"] = atoms.get_stress()
    results["energy"] = atoms.get_potential_energy()
    results["forces"] = atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


class PySCFCalculator(Calculator):
    """Kohn–Sham DFT of a molecule with PySCF (density fitting): energy and forces."""

    implemented_properties = ("energy", "forces")

    def __init__(
        self, xc: str = "PBE", basis: str = "def2-SVP", charge: int = 0, spin: int = 0, **kwargs
    ):
        super().__init__(**kwargs)
        self.xc, self.basis, self.charge, self.spin = xc, basis, charge, spin

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        try:
            from pyscf import dft, gto
        except ImportError:
            raise ValueError(
                "reference 'pyscf' needs the pyscf package (pip install pyscf)"
            ) from None
        if self.atoms.pbc.any():
            raise ValueError("the pyscf reference handles molecules only (no periodic cells)")
        mol = gto.M(
            atom=[
                (s, tuple(p))
                for s, p in zip(
                    self.atoms.get_chemical_symbols(), self.atoms.positions, strict=True
                )
            ],
            basis=self.basis,
            charge=self.charge,
            spin=self.spin,
            unit="Angstrom",
            verbose=0,
        )
        mf = (dft.RKS(mol) if self.spin == 0 else dft.UKS(mol)).density_fit()
        mf.xc = self.xc
        energy = mf.kernel()
        if not mf.converged:
            raise RuntimeError("PySCF SCF did not converge")
        gradient = mf.nuc_grad_method().kernel()
        self.results = {
            "energy": energy * units.Hartree,
            "forces": -np.asarray(gradient) * units.Hartree / units.Bohr,
        }
