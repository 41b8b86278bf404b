"""The one batched graph object that flows through equipot.

An :class:`AtomicGraph` holds one or more atomic systems as flat tensors. Every field has a
*scope* — per atom, per edge or per system — so batching, splitting and moving to a device are
generic loops over fields instead of hand-written code per field.

Conventions
-----------
* ``edge_index[0]`` is the centre atom ``i`` (the receiver of messages), ``edge_index[1]`` the
  neighbour ``j`` (the sender). Edges are sorted by ``i``.
* The edge vector is ``r_ij = positions[j] - positions[i] + edge_shift @ cell[batch[i]]``,
  with ``edge_shift`` integer image offsets (stored in the position dtype so the product needs
  no cast). This one expression gives gradients with respect to positions *and* to a strain of
  the cell (see :mod:`equipot.physics.derivatives`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from ase import Atoms


class Scope(Enum):
    ATOM = "atom"
    EDGE = "edge"
    SYSTEM = "system"


ATOM = {"scope": Scope.ATOM}
EDGE = {"scope": Scope.EDGE}
SYSTEM = {"scope": Scope.SYSTEM}


@dataclass(frozen=True, eq=False)
class AtomicGraph:
    """A batch of atomic systems with their neighbour graph (see module docstring)."""

    positions: Tensor = field(metadata=ATOM)  # (N, 3) Å
    atomic_numbers: Tensor = field(metadata=ATOM)  # (N,) int64
    batch: Tensor = field(metadata=ATOM)  # (N,) int64 system index of each atom
    edge_index: Tensor = field(metadata=EDGE)  # (2, E) int64 [centre i; neighbour j]
    edge_shift: Tensor = field(metadata=EDGE)  # (E, 3) integer image offsets, float dtype
    cell: Tensor = field(metadata=SYSTEM)  # (S, 3, 3) Å, rows are lattice vectors
    pbc: Tensor = field(metadata=SYSTEM)  # (S, 3) bool
    n_atoms: Tensor = field(metadata=SYSTEM)  # (S,) int64
    n_edges: Tensor = field(metadata=SYSTEM)  # (S,) int64
    cutoff: float = field(default=0.0, metadata={"scope": None})
    # Optional per-system inputs, zeros when not given (so every field is a tensor and
    # batching stays generic): the applied uniform electric field and the total charge.
    efield: Tensor = field(default=None, metadata=SYSTEM)  # (S, 3) V/Å
    charge: Tensor = field(default=None, metadata=SYSTEM)  # (S,) e

    def __post_init__(self):
        num_systems = self.cell.shape[0]
        if self.efield is None:
            object.__setattr__(self, "efield", self.positions.new_zeros(num_systems, 3))
        if self.charge is None:
            object.__setattr__(self, "charge", self.positions.new_zeros(num_systems))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(
        cls,
        atoms: Atoms,
        cutoff: float,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        neighbor_backend: str = "auto",
    ) -> AtomicGraph:
        """Build the graph of one ASE ``Atoms`` with all neighbours closer than ``cutoff``."""
        from equipot.geometry import neighbor_list

        positions = np.asarray(atoms.get_positions(), dtype=np.float64)
        cell = np.asarray(atoms.get_cell().array, dtype=np.float64)
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        i, j, shifts = neighbor_list(positions, cell, pbc, cutoff, backend=neighbor_backend)
        n = len(atoms)
        return cls(
            positions=torch.as_tensor(positions, dtype=dtype, device=device),
            atomic_numbers=torch.as_tensor(atoms.numbers, dtype=torch.int64, device=device),
            batch=torch.zeros(n, dtype=torch.int64, device=device),
            edge_index=torch.as_tensor(np.stack([i, j]), dtype=torch.int64, device=device),
            edge_shift=torch.as_tensor(shifts, dtype=dtype, device=device),
            cell=torch.as_tensor(cell, dtype=dtype, device=device).unsqueeze(0),
            pbc=torch.as_tensor(pbc, device=device).unsqueeze(0),
            n_atoms=torch.tensor([n], dtype=torch.int64, device=device),
            n_edges=torch.tensor([len(i)], dtype=torch.int64, device=device),
            cutoff=float(cutoff),
        )

    @classmethod
    def from_atoms_list(
        cls,
        atoms_list: Sequence[Atoms],
        cutoff: float,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> AtomicGraph:
        """Build one batched graph from several structures."""
        if len(atoms_list) == 0:
            raise ValueError("cannot build a graph from an empty list of structures")
        return batch_graphs(
            [cls.from_atoms(a, cutoff, dtype=dtype, device=device) for a in atoms_list]
        )

    # ------------------------------------------------------------------ properties
    @property
    def num_atoms(self) -> int:
        return self.positions.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    @property
    def num_systems(self) -> int:
        return self.cell.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def replace(self, **changes) -> AtomicGraph:
        """A copy with some fields replaced (the graph itself is immutable)."""
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move to ``device`` and cast floating-point fields to ``dtype``."""
        changes = {}
        for f in tensor_fields():
            value: Tensor = getattr(self, f.name)
            target_dtype = dtype if (dtype is not None and value.is_floating_point()) else None
            changes[f.name] = value.to(device=device, dtype=target_dtype)
        return self.replace(**changes)

    def edge_vectors(self) -> Tensor:
        """``r_ij = r_j - r_i + shift @ cell`` for every edge, shape (E, 3)."""
        from equipot.geometry.edges import edge_vectors

        return edge_vectors(self.positions, self.cell, self.batch, self.edge_index, self.edge_shift)

    def unbatch(self) -> list[AtomicGraph]:
        """Split into one graph per system (inverse of :func:`batch_graphs`)."""
        atom_sizes = self.n_atoms.tolist()
        edge_sizes = self.n_edges.tolist()
        atom_offsets = np.concatenate([[0], np.cumsum(atom_sizes)[:-1]]).tolist()
        parts: dict[str, list[Tensor]] = {}
        for f in tensor_fields():
            value = getattr(self, f.name)
            scope = f.metadata["scope"]
            if scope is Scope.ATOM:
                parts[f.name] = list(torch.split(value, atom_sizes, dim=0))
            elif scope is Scope.EDGE:
                dim = 1 if f.name == "edge_index" else 0
                parts[f.name] = list(torch.split(value, edge_sizes, dim=dim))
            else:
                parts[f.name] = list(torch.split(value, 1, dim=0))
        graphs = []
        for s in range(self.num_systems):
            fields_s = {name: chunks[s] for name, chunks in parts.items()}
            fields_s["edge_index"] = fields_s["edge_index"] - atom_offsets[s]
            fields_s["batch"] = torch.zeros_like(fields_s["batch"])
            graphs.append(AtomicGraph(**fields_s, cutoff=self.cutoff))
        return graphs


def tensor_fields() -> list[dataclasses.Field]:
    """The tensor fields of :class:`AtomicGraph` (everything but ``cutoff``)."""
    return [f for f in dataclasses.fields(AtomicGraph) if f.metadata.get("scope") is not None]


def batch_graphs(graphs: Sequence[AtomicGraph]) -> AtomicGraph:
    """Concatenate graphs into one batch; atom and system indices are offset accordingly."""
    if len(graphs) == 0:
        raise ValueError("cannot batch an empty list of graphs")
    cutoffs = {g.cutoff for g in graphs}
    if len(cutoffs) != 1:
        raise ValueError(f"cannot batch graphs built with different cutoffs: {sorted(cutoffs)}")
    atom_offsets = np.cumsum([0] + [g.num_atoms for g in graphs[:-1]]).tolist()
    system_offsets = np.cumsum([0] + [g.num_systems for g in graphs[:-1]]).tolist()
    merged = {}
    for f in tensor_fields():
        values = [getattr(g, f.name) for g in graphs]
        if f.name == "edge_index":
            values = [v + off for v, off in zip(values, atom_offsets, strict=True)]
            merged[f.name] = torch.cat(values, dim=1)
            continue
        if f.name == "batch":
            values = [v + off for v, off in zip(values, system_offsets, strict=True)]
        merged[f.name] = torch.cat(values, dim=0)
    return AtomicGraph(**merged, cutoff=graphs[0].cutoff)
