"""A classical NaCl reference with exact long-range electrostatics: Tosi–Fumi (Born–Mayer–
Huggins) pair terms + Ewald sums of the formal charges ±1 (equipot.electrostatics), and the
data set the long-range benchmark trains on.

    E = ½ Σ_{i≠j} [A_ij exp((σ_ij − r)/ρ) − C_ij/r⁶ − D_ij/r⁸] s(r) + E_Ewald(q = ±1)

Parameters: Tosi & Fumi, J. Phys. Chem. Solids 25, 45 (1964) (b = 0.338e-19 J with the
Pauling factors folded into A_ij; ρ = 0.317 Å; σ_ij = σ_i + σ_j with σ_Na = 1.170 Å,
σ_Cl = 1.585 Å; C, D in 1e-79 J m⁶ / 1e-99 J m⁸ converted to eV Å⁶ / eV Å⁸). The pair terms
are cut at 9 Å with a C² switch s(r) from 7.5 Å (the van der Waals tail beyond 9 Å is below
0.1 meV/atom); the Coulomb sum is exact (Ewald, accuracy 1e-8).

Data (``python benchmarks/nacl_reference.py --out benchmarks/out/nacl``): a 64-atom crystal
rattled at several temperatures and strained, a Schottky (Na + Cl) vacancy pair, a (100)
slab, and the melt (Langevin MD at 1500–2000 K), labelled with energy, forces and stress.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.io import write

import equipot
from equipot.electrostatics import FixedCharges

A_LATTICE = 5.64
J_TO_EV = 1.0 / 1.602176634e-19
B = 0.338e-19 * J_TO_EV
PAULING = {("Na", "Na"): 1.25, ("Na", "Cl"): 1.0, ("Cl", "Cl"): 0.75}
SIGMA = {"Na": 1.170, "Cl": 1.585}
C6 = {("Na", "Na"): 1.68, ("Na", "Cl"): 11.2, ("Cl", "Cl"): 116.0}  # 1e-79 J m⁶
C8 = {("Na", "Na"): 0.8, ("Na", "Cl"): 13.9, ("Cl", "Cl"): 233.0}  # 1e-99 J m⁸
RHO = 0.317
R_ON, R_OFF = 7.5, 9.0


def _table(values: dict, scale: float) -> torch.Tensor:
    table = torch.zeros(2, 2, dtype=torch.float64)
    for (a, b), v in values.items():
        i, j = ("Na", "Cl").index(a), ("Na", "Cl").index(b)
        table[i, j] = table[j, i] = v * scale
    return table


class TosiFumi(torch.nn.Module):
    """The reference as an equipot energy function (so predict gives forces and stress)."""

    def __init__(self):
        super().__init__()
        self.coulomb = FixedCharges({"Na": 1.0, "Cl": -1.0}, method="ewald", accuracy=1e-8)
        sigma = {pair: SIGMA[pair[0]] + SIGMA[pair[1]] for pair in PAULING}
        self.prefactor = _table({p: B * PAULING[p] * np.exp(sigma[p] / RHO) for p in PAULING}, 1.0)
        self.c6 = _table(C6, 1e-19 * J_TO_EV)  # 1e-79 J m⁶ = 1e-19 J Å⁶
        self.c8 = _table(C8, 1e-19 * J_TO_EV)

    def forward(self, graph):
        from equipot.model.energy_model import ModelOutput

        kind = (graph.atomic_numbers == 17).long()
        i, j = graph.edge_index
        r = torch.linalg.vector_norm(graph.edge_vectors(), dim=1)
        a, b = kind[i], kind[j]
        pair = (
            self.prefactor[a, b] * torch.exp(-r / RHO) - self.c6[a, b] / r**6 - self.c8[a, b] / r**8
        )
        x = ((r - R_ON) / (R_OFF - R_ON)).clamp(0.0, 1.0)
        switch = 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x * x)
        atomic = torch.zeros_like(graph.positions[:, 0]).index_add(0, i, 0.5 * pair * switch)
        coulomb = self.coulomb(graph)
        atomic = atomic + coulomb.atomic_energies
        energy = torch.zeros_like(coulomb.energy).index_add(0, graph.batch, atomic)
        return ModelOutput(energy=energy, atomic_energies=atomic)


class TosiFumiCalculator(Calculator):
    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model = TosiFumi()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        graph = equipot.AtomicGraph.from_atoms(self.atoms, cutoff=R_OFF)
        periodic = bool(self.atoms.pbc.all())
        pred = equipot.predict(self.model, graph, forces=True, stress=periodic)
        energy = float(pred.energy[0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": pred.forces.detach().numpy(),
        }
        if periodic:
            s = pred.stress[0].detach().numpy()
            self.results["stress"] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def crystal(repeat: int = 2) -> Atoms:
    return bulk("NaCl", "rocksalt", a=A_LATTICE, cubic=True).repeat(repeat)


def slab100(layers: int = 4, vacuum: float = 10.0) -> Atoms:
    """A (100) slab (2×2 conventional cells wide), periodic in x, y, vacuum along z."""
    atoms = bulk("NaCl", "rocksalt", a=A_LATTICE, cubic=True).repeat((2, 2, layers // 2))
    atoms.center(vacuum=vacuum, axis=2)
    atoms.pbc = (True, True, False)
    return atoms


def labelled(atoms: Atoms, calc: Calculator, config_type: str) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    info = {"energy": energy, "config_type": config_type}
    if atoms.pbc.all():
        info["stress"] = atoms.get_stress()
    atoms.calc = None
    atoms.info.update(info)
    atoms.arrays["forces"] = forces
    return atoms


def melt_frames(calc: Calculator, count: int, rng, temperature: float) -> list[Atoms]:
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = crystal()
    atoms.set_cell(atoms.cell * 1.06, scale_atoms=True)  # the liquid is ~20 % less dense
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
    dynamics.run(1500)  # melt
    frames = []
    for _ in range(count):
        dynamics.run(40)
        frames.append(labelled(atoms, calc, "melt"))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/nacl"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    calc = TosiFumiCalculator()
    frames = []
    for k in range(100):  # thermal rattles and strains of the crystal
        atoms = crystal()
        strain = np.eye(3) + rng.normal(0.0, 0.015, (3, 3))
        atoms.set_cell(atoms.cell.array @ (0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.04 + 0.12 * (k % 5) / 4, atoms.positions.shape)
        frames.append(labelled(atoms, calc, "crystal"))
    for _ in range(40):  # a Schottky pair: one Na and one Cl removed, far apart
        atoms = crystal()
        na, cl = 0, int(np.flatnonzero(atoms.numbers == 17)[-1])
        del atoms[[na, cl]]
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        frames.append(labelled(atoms, calc, "vacancy"))
    for _ in range(40):
        atoms = slab100()
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        frames.append(labelled(atoms, calc, "surface"))
    for temperature in (1500.0, 2000.0):
        frames += melt_frames(calc, 30, rng, temperature)
    order = rng.permutation(len(frames))
    frames = [frames[k] for k in order]
    write(args.out / "nacl.xyz", frames, format="extxyz")
    print(f"{len(frames)} frames → {args.out / 'nacl.xyz'}")


if __name__ == "__main__":
    main()
