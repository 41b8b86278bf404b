"""Reference data for the demo: fcc copper labelled with ASE's EMT potential.

Small cells (≤ 32 atoms) covering what a copper potential must know: thermal rattling at
several temperatures, isotropic and shear strains, a vacancy and (111) and (100) surface slabs.
Energies, forces and (for bulk cells) stresses come from EMT, so the trained model can be
checked against an exact reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

LATTICE = 3.59  # Å, close to EMT's equilibrium for Cu
KB = 8.617333e-5  # eV/K
EINSTEIN_K = 4.0  # eV/Å², rough force constant of Cu in EMT (sets the rattle amplitude)


def _rattled(atoms: Atoms, temperature: float, rng: np.random.Generator) -> Atoms:
    atoms = atoms.copy()
    sigma = np.sqrt(KB * temperature / EINSTEIN_K)
    atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    return atoms


def _strained(atoms: Atoms, rng: np.random.Generator, isotropic: float, shear: float) -> Atoms:
    atoms = atoms.copy()
    strain = np.eye(3) * (1.0 + rng.uniform(-isotropic, isotropic))
    off = rng.uniform(-shear, shear, (3, 3))
    strain += 0.5 * (off + off.T) * (1 - np.eye(3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    return atoms


def structures(num_frames: int, seed: int = 0) -> list[Atoms]:
    """``num_frames`` unlabelled structures, mixed as: 45 % bulk, 18 % strained bulk with
    shear, 12 % vacancy, 13 % (111) slab, 12 % (100) slab, at temperatures 100–1000 K."""
    rng = np.random.default_rng(seed)
    cube = bulk("Cu", "fcc", a=LATTICE, cubic=True) * (2, 2, 2)  # 32 atoms
    vacancy = cube.copy()
    del vacancy[0]
    slabs = []
    for build in (fcc111, fcc100):
        slab = build("Cu", size=(2, 2, 4), a=LATTICE, vacuum=6.0, periodic=False)
        slab.pbc = (True, True, False)
        slab.info = {}  # drop ASE's adsorbate_info (not storable in extxyz)
        slabs.append(slab)
    kinds = rng.choice(5, size=num_frames, p=[0.45, 0.18, 0.12, 0.13, 0.12])
    out = []
    for kind in kinds:
        temperature = rng.uniform(100.0, 1000.0)
        if kind == 0:
            atoms = _strained(cube, rng, isotropic=0.03, shear=0.0)
        elif kind == 1:
            atoms = _strained(cube, rng, isotropic=0.02, shear=0.03)
        elif kind == 2:
            atoms = _strained(vacancy, rng, isotropic=0.01, shear=0.0)
        else:
            atoms = slabs[kind - 3].copy()
        out.append(_rattled(atoms, temperature, rng))
    return out


def label(atoms: Atoms) -> Atoms:
    """Attach EMT energy, forces and (3D-periodic cells) stress as stored results."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def write_dataset(path: Path, num_frames: int, seed: int = 0) -> Path:
    """Generate, label and write ``num_frames`` structures to an extended XYZ file."""
    from ase.io import write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, [label(a) for a in structures(num_frames, seed)], format="extxyz")
    return path
