"""GFN2-xTB reference data where a local model fails: charged and polar dimers, an ion in a
small water cluster (tblite; energies, forces, charges, dipoles, total charge).

Monomers are relaxed with xTB at their own charge and kept rigid apart from a small rattle
(0.03 Å). Training frames: random orientations at centre-of-mass separations from contact
to 20 Å (uniform in d), rattled monomers alone, and rattled clusters. Test frames: binding
curves along three fixed random orientations per dimer (contact to 20 Å in 0.5 Å steps) and
the isolated monomers, so that E_bind(d) = E_AB(d) − E_A − E_B follows for any model.

    OMP_NUM_THREADS=1 python benchmarks/long_range_data.py --out benchmarks/out/long_range

Writes ``train.xyz`` and ``curves.xyz`` (extended XYZ; ``energy`` eV, ``forces`` eV/Å,
per-atom ``xtb_charges`` e, ``dipole`` e·Å, ``charge`` = total charge, ``pair``, ``d``,
``orientation``, ``role`` in the info), and ``data.json`` (counts, failed SCF points).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.io import write
from scipy.spatial.transform import Rotation

MONOMERS = {  # name: (builder, charge)
    "H2O": (lambda: molecule("H2O"), 0),
    "NH3": (lambda: molecule("NH3"), 0),
    "CH3OH": (lambda: molecule("CH3OH"), 0),
    "Cl-": (lambda: Atoms("Cl", positions=[[0.0, 0.0, 0.0]]), -1),
    "NH4+": (
        lambda: Atoms(
            "NH4",
            positions=[
                [0, 0, 0],
                [0.6, 0.6, 0.6],
                [-0.6, -0.6, 0.6],
                [-0.6, 0.6, -0.6],
                [0.6, -0.6, -0.6],
            ],
        ),
        1,
    ),
    "HCOO-": (
        lambda: Atoms("CHOO", positions=[[0, 0, 0], [0, 0, 1.1], [1.1, 0, -0.6], [-1.1, 0, -0.6]]),
        -1,
    ),
}
PAIRS = [  # neutral polar, charged (net ±1), a neutral ion pair
    ("H2O", "H2O"),
    ("NH3", "NH3"),
    ("CH3OH", "CH3OH"),
    ("H2O", "NH3"),
    ("H2O", "CH3OH"),
    ("Cl-", "H2O"),
    ("Cl-", "CH3OH"),
    ("NH4+", "H2O"),
    ("NH4+", "NH3"),
    ("HCOO-", "H2O"),
    ("NH4+", "HCOO-"),
]
CLUSTERS = [("Cl-", "H2O", 4), ("NH4+", "H2O", 4)]  # a charged species in a small solvent cluster
CONTACT = 1.7  # Å, smallest intermolecular atom distance sampled
D_MAX = 20.0


def xtb(atoms: Atoms, charge: int):
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", charge=charge, verbosity=0, max_iterations=500)


def label(atoms: Atoms, charge: int) -> Atoms | None:
    """The frame with xTB labels, or None where the SCF does not converge."""
    atoms = atoms.copy()
    atoms.calc = xtb(atoms, charge)
    try:
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        charges = atoms.get_charges()
        dipole = atoms.get_dipole_moment()
    except Exception:  # tblite: SCF not converged (charge-transfer crossings)
        return None
    atoms.calc = None
    atoms.info.update(energy=float(energy), dipole=np.asarray(dipole), charge=charge)
    atoms.arrays["forces"] = forces
    atoms.arrays["xtb_charges"] = charges
    return atoms


def relaxed_monomers() -> dict[str, Atoms]:
    from ase.optimize import BFGS

    out = {}
    for name, (build, charge) in MONOMERS.items():
        atoms = build()
        if len(atoms) > 1:
            atoms.calc = xtb(atoms, charge)
            BFGS(atoms, logfile=None).run(fmax=1e-3, steps=500)
            atoms.calc = None
        atoms.positions -= atoms.get_center_of_mass()
        out[name] = atoms
    return out


def place(a: Atoms, b: Atoms, d: float, rot_a, rot_b, axis) -> Atoms:
    first, second = a.copy(), b.copy()
    first.positions = rot_a.apply(first.positions)
    second.positions = rot_b.apply(second.positions) + d * axis
    return first + second


def contact_distance(a: Atoms, b: Atoms, rot_a, rot_b, axis) -> float:
    """Smallest centre distance along ``axis`` with all intermolecular distances ≥ CONTACT."""
    for d in np.arange(1.0, 12.0, 0.05):
        pair = place(a, b, d, rot_a, rot_b, axis)
        n = len(a)
        if (
            np.linalg.norm(pair.positions[:n, None] - pair.positions[None, n:], axis=-1).min()
            >= CONTACT
        ):
            return float(d)
    return 12.0


def rattled(atoms: Atoms, rng, scale=0.03) -> Atoms:
    out = atoms.copy()
    out.positions += rng.normal(0.0, scale, out.positions.shape)
    return out


def cluster(ion: Atoms, solvent: Atoms, count: int, rng) -> Atoms:
    """The ion with ``count`` solvent molecules at 2.6–4.5 Å, random orientations."""
    while True:
        system = ion.copy()
        for _ in range(count):
            for _ in range(200):
                direction = rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                molecule_ = solvent.copy()
                molecule_.positions = Rotation.random(random_state=rng).apply(molecule_.positions)
                molecule_.positions += direction * rng.uniform(2.6, 4.5)
                d = np.linalg.norm(system.positions[:, None] - molecule_.positions[None], axis=-1)
                if d.min() > CONTACT:
                    system += molecule_
                    break
        if len(system) == len(ion) + count * len(solvent):
            return system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/long_range"))
    parser.add_argument("--per-pair", type=int, default=80, help="training dimers per pair")
    parser.add_argument("--per-cluster", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    monomers = relaxed_monomers()
    train, curves, failed = [], [], []

    def add(frames, atoms, charge, **info):
        labelled = label(atoms, charge)
        if labelled is None:
            failed.append({**info, "atoms": len(atoms)})
            return
        labelled.info.update(info)
        frames.append(labelled)

    for name, atoms in monomers.items():
        charge = MONOMERS[name][1]
        add(curves, atoms, charge, pair=name, role="monomer", d=np.inf, orientation=-1)
        for _ in range(10 if len(atoms) > 1 else 1):
            add(train, rattled(atoms, rng), charge, pair=name, role="monomer", d=np.inf)
    for a_name, b_name in PAIRS:
        a, b = monomers[a_name], monomers[b_name]
        charge = MONOMERS[a_name][1] + MONOMERS[b_name][1]
        tag = f"{a_name}...{b_name}"
        for _ in range(args.per_pair):
            rot_a, rot_b = Rotation.random(random_state=rng), Rotation.random(random_state=rng)
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            start = contact_distance(a, b, rot_a, rot_b, axis)
            d = rng.uniform(start, D_MAX)
            pair = place(rattled(a, rng), rattled(b, rng), d, rot_a, rot_b, axis)
            add(train, pair, charge, pair=tag, role="dimer", d=d, first_size=len(a))
        for k in range(3):
            rot_a, rot_b = Rotation.random(random_state=rng), Rotation.random(random_state=rng)
            axis = np.array([1.0, 0.0, 0.0])
            start = contact_distance(a, b, rot_a, rot_b, axis)
            for d in np.arange(np.ceil(start * 2) / 2, D_MAX + 1e-9, 0.5):
                pair = place(a, b, d, rot_a, rot_b, axis)
                add(
                    curves,
                    pair,
                    charge,
                    pair=tag,
                    role="curve",
                    d=float(d),
                    orientation=k,
                    first_size=len(a),
                )
    for ion_name, solvent_name, count in CLUSTERS:
        ion, solvent = monomers[ion_name], monomers[solvent_name]
        tag = f"{ion_name}({solvent_name}){count}"
        for k in range(args.per_cluster):
            system = cluster(ion, solvent, count, rng)
            target = train if k < args.per_cluster * 3 // 4 else curves
            add(target, system, MONOMERS[ion_name][1], pair=tag, role="cluster", d=0.0)
    write(args.out / "train.xyz", train, format="extxyz")
    write(args.out / "curves.xyz", curves, format="extxyz")
    summary = {"train": len(train), "curves": len(curves), "failed": failed}
    (args.out / "data.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"{len(train)} training frames, {len(curves)} test frames, {len(failed)} failed SCF")


if __name__ == "__main__":
    main()
