"""What the integrators call: a potential maps a state to energies, forces and stress.

A *potential* is any callable ``potential(state, stress=False) -> PotentialOutput``. Three
adapters cover everything equipot simulates with:

* :class:`ModelPotential` — an energy function of an :class:`~equipot.graph.AtomicGraph` (an
  equipot model, or the analytic ones in :mod:`equipot.sim.analytic`), differentiated by
  :func:`equipot.predict`. Fast path for MD: a frozen inference copy of the model and a
  neighbour list with a skin that is reused across steps, so a step costs one model call.
  It also offers exact Hessians and Hessian-vector products (Newton, ``--timestep auto``).
* :class:`ASEPotential` — any ASE calculator (EMT, LJ, DFT codes: exact references in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator
from torch import Tensor, nn

from equipot.graph import AtomicGraph
from equipot.model.builder import resolve_dtype
from equipot.model.energy_model import EnergyModel
from equipot.physics.derivatives import hessian_from_graph, hessian_vector_product, predict
from equipot.sim.neighbors import SkinNeighborList
from equipot.sim.state import SimState


@dataclass
class PotentialOutput:
    energy: Tensor  # (S,) eV
    forces: Tensor  # (N, 3) eV/Å
    stress: Tensor | None = None  # (S, 3, 3) eV/Å³, ASE's sign (NaN unless 3D periodic)


class Potential(Protocol):
    def __call__(self, state: SimState, *, stress: bool = False) -> PotentialOutput: ...


class ModelPotential:
    """An energy function of an ``AtomicGraph`` as a potential (see module docstring).

    Args:
        model: an :class:`EnergyModel` (a frozen inference copy is made in ``dtype``) or any
            ``nn.Module`` mapping a graph to an output with ``.energy`` / ``.atomic_energies``
            and carrying a ``cutoff`` attribute (Å; ≤ 0 for "no neighbours needed").
        dtype: the model's precision; states of any float dtype are accepted and the
            results are cast back (e.g. float64 integration with a float32 model).
        skin: extra neighbour-list radius (Å); the list is rebuilt only once an atom has
            moved more than ``skin / 2`` (see :mod:`equipot.sim.neighbors`).
        efield: a uniform electric field (:class:`equipot.sim.field.ElectricField`), for
            models with a dipole head; the MD loop advances its time (:meth:`set_time`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device = "cpu",
        skin: float = 1.0,
        efield=None,
    ):
        self.device = torch.device(device)
        self.efield, self.time_fs = efield, 0.0
        if isinstance(model, EnergyModel):
            from equipot.calculator import frozen_copy
            from equipot.runtime import tune_allocator

            tune_allocator()
            self.dtype = resolve_dtype(dtype) if dtype is not None else model.dtype
            self.model = frozen_copy(model, self.dtype, self.device)
            cutoff = model.config.r_max
        else:
            self.dtype = resolve_dtype(dtype) if dtype is not None else torch.float64
            self.model = model.to(device=self.device, dtype=self.dtype)
            cutoff = float(model.cutoff)
        self.neighbors = SkinNeighborList(cutoff, skin)
        if efield is not None:
            from equipot.physics.fields import couples_to_field

            if not couples_to_field(self.model):
                raise ValueError("an electric field needs a model with a 'dipole' head")

    def set_time(self, time_fs: float) -> None:
        """Simulation time (fs) at which the next evaluation happens (for a field ℰ(t))."""
        self.time_fs = float(time_fs)

    @property
    def cutoff(self) -> float:
        return self.neighbors.cutoff

    def graph(self, state: SimState) -> AtomicGraph:
        """The model's input graph at the state's positions (neighbour list reused)."""
        graph = self.neighbors.graph(
            state.positions,
            state.cell,
            state.pbc,
            state.atomic_numbers,
            state.system_idx,
            self.dtype,
        )
        if self.efield is None:
            return graph
        field = torch.as_tensor(self.efield.at(self.time_fs), dtype=self.dtype, device=self.device)
        return graph.replace(efield=field.expand(graph.num_systems, 3).clone())

    def __call__(self, state: SimState, *, stress: bool = False) -> PotentialOutput:
        graph = self.graph(state)
        with torch.enable_grad():
            pred = predict(self.model, graph, forces=True, stress=stress)
        dt = state.dtype
        return PotentialOutput(
            energy=pred.energy.detach().to(dt),
            forces=pred.forces.detach().to(dt),
            stress=pred.stress.detach().to(dt) if stress else None,
        )

    def hessian(self, state: SimState) -> Tensor:
        """Exact ∂²E/∂r∂r of all atoms, (3N, 3N) eV/Å² (block-diagonal across systems)."""
        with torch.enable_grad():
            return hessian_from_graph(self.model, self.graph(state)).detach().to(state.dtype)

    def hessian_vector_product(self, state: SimState, vectors: Tensor) -> Tensor:
        """H·v for v of shape (N, 3) or (B, N, 3), eV/Å²."""
        with torch.enable_grad():
            hv = hessian_vector_product(self.model, self.graph(state), vectors.to(self.dtype))
        return hv.detach().to(state.dtype)


class ASEPotential:
    """Any ASE calculator as a potential (one calculation per system; exact references)."""

    def __init__(self, calculator: Calculator):
        self.calculator = calculator
        self._atoms: list[Atoms] = []

    def __call__(self, state: SimState, *, stress: bool = False) -> PotentialOutput:
        positions = state.positions.detach().cpu().double().numpy()
        cells = state.cell.detach().cpu().double().numpy()
        pbcs = state.pbc.cpu().numpy()
        numbers = state.atomic_numbers.cpu().numpy()
        counts = state.atoms_per_system().tolist()
        if len(self._atoms) != len(counts) or any(
            len(a) != n for a, n in zip(self._atoms, counts, strict=True)
        ):
            self._atoms = [Atoms() for _ in counts]
        energies, forces, stresses = [], [], []
        start = 0
        for s, n in enumerate(counts):
            atoms = self._atoms[s]
            sel = slice(start, start + n)
            if len(atoms) != n or not np.array_equal(atoms.numbers, numbers[sel]):
                atoms = self._atoms[s] = Atoms(numbers=numbers[sel], calculator=self.calculator)
            atoms.set_positions(positions[sel])
            atoms.set_cell(cells[s])
            atoms.set_pbc(pbcs[s])
            atoms.calc = self.calculator
            # stress first: calculators compute energy and forces along with it (one call)
            v = atoms.get_stress() if stress and pbcs[s].all() else np.full(6, np.nan)
            energies.append(atoms.get_potential_energy())
            forces.append(atoms.get_forces())
            if stress:
                stresses.append(v[[[0, 5, 4], [5, 1, 3], [4, 3, 2]]])
            start += n
        to = lambda x: torch.as_tensor(np.asarray(x), dtype=state.dtype, device=state.device)  # noqa: E731
        return PotentialOutput(
            energy=to(energies),
            forces=to(np.concatenate(forces)),
            stress=to(np.stack(stresses)) if stress else None,
        )


def as_potential(obj, *, dtype: str | torch.dtype | None = None, skin: float = 1.0) -> Potential:
    """A potential from an equipot model / graph energy module, an ASE calculator, or a
    potential (returned as is)."""
    if isinstance(obj, nn.Module):
        return ModelPotential(obj, dtype=dtype, skin=skin)
    if isinstance(obj, Calculator):
        return ASEPotential(obj)
    if callable(obj):
        return obj
    raise TypeError(f"cannot use {type(obj).__name__} as a potential")


def evaluate(state: SimState, potential: Potential, *, stress: bool = False) -> SimState:
    """The state with energy, forces (zero on fixed atoms) and optionally stress filled in."""
    out = potential(state, stress=stress)
    forces = out.forces
    if bool(state.fixed.any()):
        forces = forces.masked_fill(state.fixed.unsqueeze(1), 0.0)
    return state.replace(energy=out.energy, forces=forces, stress=out.stress)
