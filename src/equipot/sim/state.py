"""The batched simulation state: one dataclass of tensors for one or many systems.

Units are ASE's throughout: positions Å, masses amu, energies eV, time in ASE's unit
``t = Å·√(amu/eV)`` (≈ 10.18 fs; user-facing functions take fs), so momenta are
amu·Å/t and ``p²/m`` is an energy in eV — exactly what ``Atoms.get_momenta()`` holds.

Every field has a scope, per atom or per system (as in :class:`~equipot.graph.AtomicGraph`),
and ``system_idx`` maps each atom to its system. Integrators never mutate a state: ``step``
returns a new one (``state.replace(...)``), which shares unchanged tensors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from torch import Tensor

from equipot.graph import ATOM, SYSTEM

KB = units.kB  # eV/K
FS = units.fs  # one femtosecond in ASE time units
GPA = units.GPa  # one GPa in eV/Å³


@dataclass(kw_only=True, eq=False)
class SimState:
    """Positions, momenta and cells of ``S`` systems with ``N`` atoms in total."""

    positions: Tensor = field(metadata=ATOM)  # (N, 3) Å
    momenta: Tensor = field(metadata=ATOM)  # (N, 3) amu·Å/t
    masses: Tensor = field(metadata=ATOM)  # (N,) amu
    atomic_numbers: Tensor = field(metadata=ATOM)  # (N,) int64
    system_idx: Tensor = field(metadata=ATOM)  # (N,) int64
    fixed: Tensor = field(metadata=ATOM)  # (N,) bool: atoms held in place
    cell: Tensor = field(metadata=SYSTEM)  # (S, 3, 3) Å, rows are lattice vectors
    pbc: Tensor = field(metadata=SYSTEM)  # (S, 3) bool
    dof: Tensor = field(metadata=SYSTEM)  # (S,) degrees of freedom counted in the temperature
    energy: Tensor | None = field(default=None, metadata=SYSTEM)  # (S,) eV, at `positions`
    forces: Tensor | None = field(default=None, metadata=ATOM)  # (N, 3) eV/Å
    stress: Tensor | None = field(default=None, metadata=SYSTEM)  # (S, 3, 3) eV/Å³ (ASE sign)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(
        cls,
        atoms: Atoms | Sequence[Atoms],
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        temperature: float | None = None,
        seed: int | None = None,
        remove_com: bool = True,
    ) -> SimState:
        """A state from one or several structures (momenta and ``FixAtoms`` are kept).

        ``temperature`` (K) draws Maxwell–Boltzmann momenta instead. With ``remove_com`` the
        centre-of-mass momentum of every system without fixed atoms is set to zero and its
        three degrees of freedom are not counted in ``dof`` (it is conserved by Newton's
        equations); thermostats that act on it (Langevin) count it again.
        """
        atoms_list = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        if not atoms_list:
            raise ValueError("cannot build a simulation state from an empty list of structures")
        parts: dict[str, list] = {k: [] for k in ("pos", "mom", "mass", "z", "sys", "fix")}
        for s, a in enumerate(atoms_list):
            fixed = np.zeros(len(a), dtype=bool)
            for c in a.constraints:
                if isinstance(c, FixAtoms):
                    fixed[c.get_indices()] = True
                else:
                    raise ValueError(
                        f"structure {s}: constraint {type(c).__name__} is not supported "
                        "(only FixAtoms)"
                    )
            parts["pos"].append(a.get_positions())
            parts["mom"].append(a.get_momenta())
            parts["mass"].append(a.get_masses())
            parts["z"].append(a.numbers)
            parts["sys"].append(np.full(len(a), s))
            parts["fix"].append(fixed)
        as_t = lambda x, dt=dtype: torch.as_tensor(np.concatenate(x), dtype=dt, device=device)  # noqa: E731
        cells = np.stack([a.cell.array for a in atoms_list])
        pbcs = np.stack([a.pbc for a in atoms_list])
        state = cls(
            positions=as_t(parts["pos"]),
            momenta=as_t(parts["mom"]),
            masses=as_t(parts["mass"]),
            atomic_numbers=as_t(parts["z"], torch.int64),
            system_idx=as_t(parts["sys"], torch.int64),
            fixed=as_t(parts["fix"], torch.bool),
            cell=torch.as_tensor(cells, dtype=dtype, device=device),
            pbc=torch.as_tensor(pbcs, device=device),
            dof=torch.zeros(len(atoms_list), dtype=dtype, device=device),
        )
        if temperature is not None:
            gen = torch.Generator(device=device)
            gen.manual_seed(new_seed() if seed is None else seed)
            state = state.replace(momenta=maxwell_boltzmann(state, temperature, gen))
        if remove_com:
            state = state.replace(momenta=zero_com_momentum(state))
        return state.replace(dof=count_dof(state, com_conserved=remove_com))

    def to_atoms(self) -> list[Atoms]:
        """One ``Atoms`` per system, with momenta, ``FixAtoms`` and (if computed) a
        single-point calculator holding energy, forces and stress."""
        out = []
        cpu = {f: getattr(self, f) for f in ("positions", "momenta", "masses", "fixed")}
        cpu = {
            k: v.detach().cpu().double().numpy() if k != "fixed" else v.cpu().numpy()
            for k, v in cpu.items()
        }
        z = self.atomic_numbers.cpu().numpy()
        sys_idx = self.system_idx.cpu().numpy()
        for s in range(self.n_systems):
            sel = np.flatnonzero(sys_idx == s)
            atoms = Atoms(
                numbers=z[sel],
                positions=cpu["positions"][sel],
                cell=self.cell[s].detach().cpu().double().numpy(),
                pbc=self.pbc[s].cpu().numpy(),
                masses=cpu["masses"][sel],
                momenta=cpu["momenta"][sel],
            )
            if cpu["fixed"][sel].any():
                atoms.set_constraint(FixAtoms(np.flatnonzero(cpu["fixed"][sel])))
            results = {}
            if self.energy is not None:
                results["energy"] = float(self.energy[s])
            if self.forces is not None:
                results["forces"] = self.forces[sel].detach().cpu().double().numpy()
            if self.stress is not None and bool(self.pbc[s].all()):
                sig = self.stress[s].detach().cpu().double().numpy()
                results["stress"] = sig[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            out.append(atoms)
        return out

    # ------------------------------------------------------------------ helpers
    def replace(self, **changes) -> SimState:
        return dataclasses.replace(self, **changes)

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[0]

    @property
    def n_systems(self) -> int:
        return self.cell.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def atoms_per_system(self) -> Tensor:
        return torch.bincount(self.system_idx, minlength=self.n_systems)

    def sum_per_system(self, per_atom: Tensor) -> Tensor:
        """Σ over the atoms of each system of a per-atom quantity (N,) → (S,)."""
        out = per_atom.new_zeros(self.n_systems, *per_atom.shape[1:])
        return out.index_add_(0, self.system_idx, per_atom)

    def kinetic_energy(self) -> Tensor:
        """K_s = Σ_i p_i² / 2m_i per system, eV."""
        return 0.5 * self.sum_per_system((self.momenta**2).sum(1) / self.masses)

    def temperature(self) -> Tensor:
        """T_s = 2 K_s / (dof_s k_B), K."""
        return 2.0 * self.kinetic_energy() / (self.dof.clamp(min=1) * KB)

    def volume(self) -> Tensor:
        return torch.linalg.det(self.cell).abs()

    def velocities(self) -> Tensor:
        return self.momenta / self.masses.unsqueeze(1)


def new_seed() -> int:
    """A fresh random seed (from the OS) for runs where the user gave none."""
    return int(np.random.SeedSequence().entropy % 2**63)


def count_dof(state: SimState, *, com_conserved: bool) -> Tensor:
    """3 per free atom, minus 3 per system whose total momentum is conserved (and zero)."""
    free = state.sum_per_system((~state.fixed).to(state.dtype))
    dof = 3.0 * free
    if com_conserved:
        has_fixed = state.sum_per_system(state.fixed.to(state.dtype)) > 0
        dof = torch.where(has_fixed, dof, dof - 3.0)
    return dof.clamp(min=0.0)


def maxwell_boltzmann(state: SimState, temperature: float, generator: torch.Generator) -> Tensor:
    """Momenta drawn from exp(−p²/2mk_BT); fixed atoms get none."""
    kt = KB * temperature
    noise = torch.randn(
        state.positions.shape, generator=generator, dtype=state.dtype, device=state.device
    )
    p = noise * torch.sqrt(state.masses * kt).unsqueeze(1)
    return p.masked_fill(state.fixed.unsqueeze(1), 0.0)


def rescale_to(state: SimState, temperature: float) -> Tensor:
    """Momenta scaled so that every system has exactly ``temperature`` (K)."""
    current = state.temperature()
    factor = torch.where(current > 0, torch.sqrt(temperature / current.clamp(min=1e-300)), 1.0)
    return state.momenta * factor[state.system_idx].unsqueeze(1)


def zero_com_momentum(state: SimState) -> Tensor:
    """Momenta with the centre-of-mass momentum of each system removed (mass-weighted, so
    the kinetic energy of the rest is unchanged); systems with fixed atoms are left alone."""
    total = state.sum_per_system(state.momenta)  # (S, 3)
    mass = state.sum_per_system(state.masses)  # (S,)
    has_fixed = state.sum_per_system(state.fixed.to(state.dtype)) > 0
    v_com = torch.where(has_fixed.unsqueeze(1), 0.0, total / mass.unsqueeze(1))
    return state.momenta - state.masses.unsqueeze(1) * v_com[state.system_idx]


def extend(state: SimState, cls: type, **extra) -> SimState:
    """Turn ``state`` into an instance of the subclass ``cls`` with the ``extra`` fields."""
    base = {f.name: getattr(state, f.name) for f in dataclasses.fields(SimState)}
    return cls(**base, **extra)
