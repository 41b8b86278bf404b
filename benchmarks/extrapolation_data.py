"""Reference data of the extrapolation benchmark: GFN2-xTB molecules and EMT copper.

Molecules (``structures/<name>.xyz``; tblite's GFN2-xTB, its default electronic temperature):
relaxed once, then Langevin MD (friction 0.01/fs; Δt 1 fs, 0.5 fs at 1200 K) — 300 K for
training (500 frames every 10 fs after 0.5 ps) and an independent 300 K trajectory for the
in-distribution test; 600 K and 1200 K trajectories (100 frames every 10 / 5 fs); a relaxed
torsion scan through 360° in 15° steps; rigid stretches of one X–H and one heavy-atom bond
from 0.8·d0 to 5 Å; and uniform compression about the centroid to 0.75 of the size.
Isolated-atom energies (E0) come from the same method. Copper (ASE's EMT): 32-atom fcc cells
at 100–600 K for training; test sets liquid (1800 K), (111)/(100)/(110) slabs at 300 K,
and a vacancy at 300 K (107 atoms).

Frames are extxyz with ``REF_energy`` (eV) / ``REF_forces`` (eV/Å); MD frames carry no
velocity. Every system is written to ``<out>/<system>/``; an existing system is reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import BFGS

HERE = Path(__file__).resolve().parent

# name: (torsion scanned, [(bond i, j) stretched]); indices of structures/<name>.xyz
MOLECULES = {
    "alanine_dipeptide": ((1, 3, 4, 6), [(3, 13), (4, 5)]),  # φ; N–H, Cα–Cβ
    "biphenyl": ((2, 3, 6, 7), [(0, 12), (3, 6)]),  # ring–ring; C–H, ring–ring C–C
    "methyl_acetate": ((2, 1, 3, 4), [(4, 8), (3, 4)]),  # ester O=C–O–C; C–H, O–CH3
}
TORSION_STEP = 15.0


def xtb():
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0)


def labelled(atoms: Atoms, calc, **info) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.info.update(info, REF_energy=float(energy))
    frame.arrays["REF_forces"] = np.array(forces)
    return frame


def md_frames(atoms, calc, temperature, count, every, equilibrate, seed, dt=0.5):
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(
        atoms, dt * units.fs, temperature_K=temperature, friction=0.01 / units.fs, rng=rng
    )
    dyn.run(equilibrate)
    frames = []
    for _ in range(count):
        dyn.run(every)
        frames.append(labelled(atoms, calc, temperature=temperature))
    return frames


def isolated_energies(symbols, calc_factory) -> dict[str, float]:
    e0 = {}
    for s in sorted(set(symbols)):
        atom = Atoms(s, positions=[[0.0, 0.0, 0.0]])
        atom.calc = calc_factory()
        e0[s] = float(atom.get_potential_energy())
    return e0


def molecule(name: str, out: Path, seed: int = 0) -> Path:
    from equipot.scan import Coordinate, run_scan, torsion_values

    folder = out / name
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    calc = xtb()
    atoms = read(HERE / "structures" / f"{name}.xyz")
    atoms.calc = calc
    BFGS(atoms, logfile=None).run(fmax=0.005, steps=1000)
    atoms = Atoms(atoms.numbers, atoms.positions)
    write(folder / "minimum.xyz", atoms)
    e0 = isolated_energies(atoms.get_chemical_symbols(), xtb)
    torsion, stretches = MOLECULES[name]
    train = md_frames(atoms, calc, 300, 500, 10, 500, seed, dt=1.0)
    write(folder / "train.xyz", train[:450])
    write(folder / "valid.xyz", train[450:])
    write(folder / "test_300K.xyz", md_frames(atoms, calc, 300, 100, 10, 300, seed + 1, dt=1.0))
    write(folder / "md_600K.xyz", md_frames(atoms, calc, 600, 100, 10, 300, seed + 2, dt=1.0))
    write(folder / "md_1200K.xyz", md_frames(atoms, calc, 1200, 100, 10, 300, seed + 3))
    coordinate = Coordinate.torsion(atoms, torsion)
    values = torsion_values(coordinate.value(atoms), TORSION_STEP)
    scan = run_scan(atoms, calc, coordinate, values, relax=True, fmax=0.01, steps=500)
    write(
        folder / "torsion.xyz",
        [labelled(f, calc, value=v) for f, v in zip(scan.frames, values, strict=True)],
    )
    meta = {
        "e0": e0,
        "torsion": list(torsion),
        "stretches": [list(b) for b in stretches],
        "torsion_converged": scan.converged.tolist(),
    }
    for a, b in stretches:
        c = Coordinate.stretch(atoms, (a, b))
        d0 = c.value(atoms)
        distances = np.concatenate([np.linspace(0.8 * d0, d0, 5)[:-1], np.linspace(d0, 5.0, 18)])
        frames = []
        for d in distances:
            x = atoms.copy()
            c.set(x, float(d))
            try:
                frames.append(labelled(x, calc, value=float(d)))
            except Exception as exc:  # SCF failure far out: leave the point out
                print(f"{name} stretch {a}-{b} at {d:.2f} Å: {exc}")
        write(folder / f"stretch_{a}_{b}.xyz", frames)
    centre = atoms.positions.mean(0)
    frames = []
    for s in np.linspace(1.0, 0.75, 9):
        x = atoms.copy()
        x.positions = centre + s * (atoms.positions - centre)
        frames.append(labelled(x, calc, value=float(s)))
    write(folder / "compression.xyz", frames)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    (folder / "done").write_text("")
    return folder


def copper(out: Path, seed: int = 0) -> Path:
    from ase.build import bulk, fcc100, fcc110, fcc111
    from ase.calculators.emt import EMT

    folder = out / "copper"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    calc = EMT()
    cell = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    train = []
    for k, t in enumerate((100, 200, 300, 400, 500, 600)):
        train += md_frames(cell, calc, t, 90, 40, 1000, seed + k, dt=2.0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    write(folder / "train.xyz", [train[k] for k in order[:490]])
    write(folder / "valid.xyz", [train[k] for k in order[490:540]])
    write(folder / "test_300K.xyz", md_frames(cell, calc, 300, 100, 40, 1000, seed + 10, dt=2.0))
    hot = cell.copy()
    hot.set_cell(cell.cell * 1.03, scale_atoms=True)  # liquid density ≈ 0.92 of the crystal's
    melted = md_frames(hot, calc, 3000, 1, 10, 3000, seed + 11, dt=2.0)[0]
    write(folder / "liquid.xyz", md_frames(melted, calc, 1800, 100, 40, 1500, seed + 12, dt=2.0))
    slabs = []
    for k, build in enumerate((fcc111, fcc100, fcc110)):
        slab = build("Cu", size=(2, 2, 5), a=3.6, vacuum=6.0)
        slabs += md_frames(slab, calc, 300, 34, 40, 1000, seed + 20 + k, dt=2.0)
    write(folder / "surfaces.xyz", slabs)
    vacancy = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    del vacancy[0]
    write(folder / "vacancy.xyz", md_frames(vacancy, calc, 300, 100, 40, 1000, seed + 30, dt=2.0))
    e0 = isolated_energies(["Cu"], EMT)
    (folder / "meta.json").write_text(json.dumps({"e0": e0}, indent=1))
    (folder / "done").write_text("")
    return folder


def generate(out: Path, systems: list[str]) -> dict[str, Path]:
    return {s: copper(out) if s == "copper" else molecule(s, out) for s in systems}


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "out" / "extrapolation" / "data"
    names = sys.argv[2:] or [*MOLECULES, "copper"]
    for name in names:
        print(name, generate(target, [name])[name], flush=True)
