"""Padded neighbour layout: edges sorted by centre atom → slots (i, 0..K-1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PaddedNeighbors:
    """Where each edge sits in the (N, K) slot grid.

    ``flat_slot[e] = i·K + (rank of e among i's edges)``; ``neighbors`` (N, K) holds j for
    occupied slots and 0 for empty ones; ``occupied`` (N·K,) marks occupied slots.
    """

    flat_slot: Tensor
    neighbors: Tensor
    occupied: Tensor
    counts: Tensor  # (N,) occupied slots per atom: slots 0..count-1
    max_neighbors: int
    dense: bool = False  # every atom has K neighbours: the padded layout is a plain view

    def scatter(self, edge_values: Tensor, fill: float | Tensor = 0.0) -> Tensor:
        """(E, ...) per-edge values → (N, K, ...), empty slots set to ``fill``."""
        n, k = self.neighbors.shape
        rest = edge_values.shape[1:]
        if self.dense:
            return edge_values.view(n, k, *rest)
        out = edge_values.new_zeros((n * k, *rest)).index_copy(0, self.flat_slot, edge_values)
        if not isinstance(fill, Tensor) and fill == 0.0:
            return out.view(n, k, *rest)
        empty = (~self.occupied).view(-1, *([1] * len(rest))).to(edge_values.dtype)
        return (out + empty * fill).view(n, k, *rest)

    def gather(self, slot_values: Tensor) -> Tensor:
        """(N, K, ...) per-slot values → (E, ...) per edge (the inverse of :meth:`scatter`)."""
        flat = slot_values.reshape(-1, *slot_values.shape[2:])
        return flat if self.dense else flat.index_select(0, self.flat_slot)


def pad_neighbors(edge_index: Tensor, num_atoms: int) -> PaddedNeighbors:
    centres, neighbours = edge_index[0], edge_index[1]
    num_edges = centres.shape[0]
    if num_edges > 1 and bool((centres[1:] < centres[:-1]).any()):
        raise ValueError("edges must be sorted by their centre atom (edge_index[0])")
    counts = torch.bincount(centres, minlength=num_atoms)
    k = max(int(counts.max()), 1) if num_edges else 1
    if num_edges == num_atoms * k:  # e.g. a small molecule, every atom sees all others
        flat_slot = torch.arange(num_edges, device=centres.device)
        occupied = torch.ones(num_edges, dtype=torch.bool, device=centres.device)
        return PaddedNeighbors(flat_slot, neighbours.view(num_atoms, k), occupied, counts, k, True)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(num_edges, device=centres.device) - first[centres]
    flat_slot = centres * k + rank
    neighbors = torch.zeros(num_atoms * k, dtype=torch.int64, device=centres.device)
    neighbors = neighbors.index_copy(0, flat_slot, neighbours).view(num_atoms, k)
    occupied = torch.zeros(num_atoms * k, dtype=torch.bool, device=centres.device)
    occupied = occupied.index_fill(0, flat_slot, True)
    return PaddedNeighbors(flat_slot, neighbors, occupied, counts, k)
