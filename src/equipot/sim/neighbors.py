"""A neighbour list with a skin, reused across MD steps.

The list holds every pair closer than ``cutoff + skin`` at the reference geometry (positions
r⁰, cells h⁰). Each step it is filtered to the pairs closer than ``cutoff`` (a few cheap tensor
ops) and rebuilt only when a pair outside it could have come within ``cutoff``.

Rebuild criterion, exact for changing cells too: write the cell of each system as h = h⁰F
and every position as r_i = r⁰_i F + u_i (an affine deformation plus a displacement u). Then
r_ij = r⁰_ij F + u_j − u_i, so |r_ij| ≥ σ_min(F)·|r⁰_ij| − 2 max|u|. A pair missing from the
list had |r⁰_ij| ≥ cutoff + skin, so the list stays complete while

    2 max_i |u_i| ≤ σ_min(F)·(cutoff + skin) − cutoff,

which for a fixed cell (F = 1) is the usual "no atom moved more than half the skin".
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from equipot.geometry.edges import check_min_distance, edge_vectors
from equipot.geometry.neighbors import neighbor_list
from equipot.graph import AtomicGraph


class SkinNeighborList:
    """Builds :class:`AtomicGraph` s of a simulation state, reusing one neighbour search.

    ``cutoff <= 0`` means the energy function needs no neighbours (e.g. a harmonic
    potential): graphs then have no edges and nothing is ever searched.
    """

    def __init__(self, cutoff: float, skin: float = 1.0):
        if skin < 0:
            raise ValueError(f"skin must be ≥ 0 Å, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.rebuilds = 0  # number of neighbour searches so far
        self._key = None
        self._pbc: Tensor | None = None
        self._system_idx: Tensor | None = None
        self._offsets: Tensor | None = None
        self._offsets_cell: Tensor | None = None
        self._ref_positions: Tensor | None = None
        self._ref_cell: Tensor | None = None
        self._ref_cell_inv: Tensor | None = None
        self._edge_index: Tensor | None = None
        self._edge_shift: Tensor | None = None

    def graph(
        self,
        positions: Tensor,
        cell: Tensor,
        pbc: Tensor,
        atomic_numbers: Tensor,
        system_idx: Tensor,
        dtype: torch.dtype,
    ) -> AtomicGraph:
        """The graph at these positions with exactly the pairs closer than ``cutoff``."""
        key = (positions.shape[0], cell.shape[0], positions.device, dtype)
        if (
            key != self._key
            or not torch.equal(pbc, self._pbc)
            or not torch.equal(system_idx, self._system_idx)
            or self._needs_rebuild(positions, cell)
        ):
            self._rebuild(positions, cell, pbc, system_idx, dtype)
            self._key = key
        pos = positions.to(dtype)
        cel = cell.to(dtype)
        edge_index, edge_shift = self._edge_index, self._edge_shift
        if self.skin > 0 and edge_index.shape[1]:
            if self._offsets is None or not torch.equal(cel, self._offsets_cell):
                zero = torch.zeros_like(pos)
                self._offsets = edge_vectors(zero, cel, system_idx, edge_index, edge_shift)
                self._offsets_cell = cel
            i, j = edge_index[0], edge_index[1]
            vec = pos.index_select(0, j) - pos.index_select(0, i) + self._offsets
            keep = (vec * vec).sum(1) < self.cutoff**2
            edge_index, edge_shift = edge_index[:, keep], edge_shift[keep]
        n_systems = cell.shape[0]
        return AtomicGraph(
            positions=pos,
            atomic_numbers=atomic_numbers,
            batch=system_idx,
            edge_index=edge_index,
            edge_shift=edge_shift,
            cell=cel,
            pbc=pbc,
            n_atoms=self._n_atoms,
            n_edges=torch.bincount(system_idx[edge_index[0]], minlength=n_systems),
            cutoff=max(self.cutoff, 0.0),
        )

    # ------------------------------------------------------------------ internals
    def _needs_rebuild(self, positions: Tensor, cell: Tensor) -> bool:
        if self.cutoff <= 0:
            return False
        ref_pos, ref_cell = self._ref_positions, self._ref_cell
        if torch.equal(cell, ref_cell):
            moved = (positions - ref_pos).norm(dim=1).max()
            return bool(2.0 * moved > self.skin)
        if not bool(self._pbc.all()):
            return True  # open directions have no meaningful cell deformation
        deformation = self._ref_cell_inv @ cell  # F_s = (h⁰_s)⁻¹ h_s
        affine = torch.einsum("ni,nij->nj", ref_pos, deformation[self._system_idx])
        moved = (positions - affine).norm(dim=1).max()
        sigma_min = torch.linalg.svdvals(deformation).min()
        return bool(2.0 * moved > sigma_min * (self.cutoff + self.skin) - self.cutoff)

    def _rebuild(
        self,
        positions: Tensor,
        cell: Tensor,
        pbc: Tensor,
        system_idx: Tensor,
        dtype: torch.dtype,
    ) -> None:
        device = positions.device
        self._pbc = pbc.clone()
        self._offsets = None  # shift·cell per edge, cached while the cell stays the same
        self._system_idx = system_idx
        self._n_atoms = torch.bincount(system_idx, minlength=cell.shape[0])
        self._ref_positions = positions.detach().clone()
        self._ref_cell = cell.detach().clone()
        if bool(pbc.all()):
            self._ref_cell_inv = torch.linalg.inv(self._ref_cell)
        if self.cutoff <= 0:
            self._edge_index = torch.zeros((2, 0), dtype=torch.int64, device=device)
            self._edge_shift = torch.zeros((0, 3), dtype=dtype, device=device)
            return
        self.rebuilds += 1
        pos = positions.detach().cpu().double().numpy()
        cells = cell.detach().cpu().double().numpy()
        pbcs = pbc.cpu().numpy()
        counts = self._n_atoms.tolist()
        edges_i, edges_j, shifts = [], [], []
        start = 0
        for s, n in enumerate(counts):
            p = pos[start : start + n]
            i, j, sh = neighbor_list(p, cells[s], pbcs[s], self.cutoff + self.skin)
            check_min_distance(p, cells[s], i, j, sh)
            edges_i.append(i + start)
            edges_j.append(j + start)
            shifts.append(sh)
            start += n
        self._edge_index = torch.as_tensor(
            np.stack([np.concatenate(edges_i), np.concatenate(edges_j)]), device=device
        )
        self._edge_shift = torch.as_tensor(np.concatenate(shifts), dtype=dtype, device=device)
