"""The data recipe of the shipped organic model: GFN2-xTB on small H/C/N/O/F/S molecules.

Molecules: the closed-shell H/C/N/O/F/S members of ASE's G2 set, the monomers of the S22 set
and its dimers (non-covalent contacts). **Excluded** so that the rMD17 benchmarks test
transfer to unseen molecules: every rMD17 molecule — ethanol (G2 ``CH3CH2OH``), benzene (G2
``C6H6`` and every S22 complex containing it) and uracil (the S22 uracil dimers); the others
(aspirin, azobenzene, malonaldehyde, naphthalene, paracetamol, salicylic acid, toluene) are in
neither set.

Per molecule: a GFN2-xTB relaxation (1 frame), then Langevin MD at 300, 600, 900 and 1200 K
(0.5 fs steps, friction 0.02 fs⁻¹, 50 steps to equilibrate, 400 steps sampled every 20:
20 frames per temperature), plus one frame per free atom (its ground-state spin) so the
isolated-atom energies E0 are known. Conformers are reached by the high-temperature runs.
Frames carry ``info``: ``config_type`` (relaxed / md / isolated_atom), ``molecule``,
``temperature`` (K) and ``source`` (g2 / s22).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

ELEMENTS = ("H", "C", "N", "O", "F", "S")
TEMPERATURES = (300.0, 600.0, 900.0, 1200.0)
EXCLUDED_G2 = {"CH3CH2OH", "C6H6"}  # rMD17's ethanol and benzene
OPEN_SHELL_G2 = {"O2", "S2", "SO", "NH", "CH2_s3B1d"}  # triplet ground states
EXCLUDED_S22_WORDS = ("Benzene", "Uracil", "Indole-benzene")  # complexes with rMD17 molecules


def molecules() -> Iterator[tuple[str, str, Atoms]]:
    """(source, name, atoms) of every molecule in the recipe (see module docstring)."""
    from ase.collections import g2
    from ase.data import s22

    allowed = set(ELEMENTS)
    for name in g2.names:
        atoms = g2[name]
        if name in EXCLUDED_G2 or name in OPEN_SHELL_G2 or len(atoms) < 2:
            continue
        if not set(atoms.get_chemical_symbols()) <= allowed or atoms.numbers.sum() % 2:
            continue
        yield "g2", name, atoms
    seen: set[str] = set()
    for name in s22.s22:
        if any(word in name for word in EXCLUDED_S22_WORDS):
            continue
        dimer = s22.create_s22_system(name)
        n_first = s22.data[name]["dimer atoms"][0]
        yield "s22", name, dimer
        for part, monomer in enumerate((dimer[:n_first], dimer[n_first:])):
            formula = monomer.get_chemical_formula()
            if formula not in seen:
                seen.add(formula)
                yield "s22", f"{name}:monomer{part}", monomer


def _frame(atoms: Atoms, energy: float, forces: np.ndarray, info: dict) -> Atoms:
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions.copy())
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces.copy())
    frame.info.update(info)
    return frame


def sample_molecule(
    source: str,
    name: str,
    atoms: Atoms,
    rng: np.random.Generator,
    *,
    temperatures=TEMPERATURES,
    equilibrate: int = 50,
    steps: int = 400,
    interval: int = 20,
) -> list[Atoms]:
    """Relaxed geometry plus MD snapshots of one molecule, labelled with GFN2-xTB."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.optimize import BFGS

    from equipot.transfer.teachers import XTBCalculator

    atoms = atoms.copy()
    atoms.calc = XTBCalculator("GFN2-xTB")
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=150)
    base = {"molecule": name, "source": source}
    frames = [
        _frame(
            atoms,
            atoms.get_potential_energy(),
            atoms.get_forces(),
            base | {"config_type": "relaxed", "temperature": 0.0},
        )
    ]
    start = atoms.positions.copy()
    for temperature in temperatures:
        atoms.positions = start
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        md = Langevin(
            atoms,
            0.5 * units.fs,
            temperature_K=temperature,
            friction=0.02 / units.fs,
            rng=rng,
        )
        try:
            md.run(equilibrate)
            for _ in range(steps // interval):
                md.run(interval)
                energy, forces = atoms.get_potential_energy(), atoms.get_forces()
                if not (np.isfinite(energy) and np.isfinite(forces).all()):
                    break
                info = base | {"config_type": "md", "temperature": temperature}
                frames.append(_frame(atoms, energy, forces, info))
        except Exception:  # an SCF that does not converge ends this temperature's run
            continue
    return frames


def isolated_atoms() -> list[Atoms]:
    from ase.data import atomic_numbers

    from equipot.transfer.teachers import isolated_atom_energy

    out = []
    for symbol in ELEMENTS:
        atoms = Atoms(symbol, positions=[[0.0, 0.0, 0.0]])
        energy = isolated_atom_energy("gfn2-xtb", atomic_numbers[symbol])
        info = {"config_type": "isolated_atom", "molecule": symbol, "source": "atom"}
        out.append(_frame(atoms, energy, np.zeros((1, 3)), info | {"temperature": 0.0}))
    return out


def generate(out: Path, seed: int = 0, limit: int | None = None, progress: bool = True) -> Path:
    """Write the whole data set to ``out`` (extxyz); ``limit`` caps the number of molecules."""
    from ase.io import write

    from equipot.progress import progress_bar

    rng = np.random.default_rng(seed)
    todo = list(molecules())[:limit]
    frames = isolated_atoms()
    bar = progress_bar(len(todo), "GFN2-xTB MD", "molecule", enabled=progress)
    for source, name, atoms in todo:
        frames.extend(sample_molecule(source, name, atoms, rng))
        bar.set_postfix(frames=len(frames), molecule=name[:20], refresh=False)
        bar.update()
    bar.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write(out, frames, format="extxyz")
    return out
