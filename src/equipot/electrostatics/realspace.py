"""Pair sums in real space: the short-range Ewald part and direct summation (open systems).

Both return potentials φ_i = Σ_j q_j v(r_ij) (in e/Å) so that every method gives atomic
energies E_i = ½ k_e q_i φ_i. Charges may be (N,) or (N, M): M charge vectors at once (M = N
with the identity gives the Coulomb matrix, :mod:`~.qeq`). Distances are computed here from
positions (and the cell), so autograd differentiates through them.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from equipot.electrostatics.kernels import PairKernel
from equipot.geometry import neighbor_list

DIRECT_BLOCK = 2048  # rows of the pair matrix per block for large open systems


def periodic_pairs(positions: Tensor, cell: Tensor, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """All ordered pairs (i, j, image) of one 3D-periodic cell with |r_ij| < cutoff
    (including an atom's own images), as (i, j, distances)."""
    i, j, shifts = neighbor_list(
        positions.detach().cpu().numpy().astype(np.float64),
        cell.detach().cpu().numpy().astype(np.float64),
        np.ones(3, dtype=bool),
        cutoff,
    )
    device = positions.device
    i, j = torch.as_tensor(i, device=device), torch.as_tensor(j, device=device)
    shifts = torch.as_tensor(shifts, dtype=positions.dtype, device=device)
    vectors = positions[j] - positions[i] + shifts @ cell
    return i, j, torch.linalg.vector_norm(vectors, dim=1)


def short_range_potential(
    charges: Tensor,
    i: Tensor,
    j: Tensor,
    distances: Tensor,
    kernel: PairKernel,
    eta: float,
    cutoff: float,
) -> Tensor:
    """φ_i^sr = Σ_{j, images; r < cutoff} q_j v_sr(r_ij; η) from a full (both-ways) pair list."""
    inside = distances < cutoff
    safe = torch.where(inside, distances, torch.full_like(distances, cutoff))
    v = torch.where(inside, kernel.short_range(safe, eta), 0.0)
    return torch.zeros_like(charges).index_add(0, i, charges[j] * _per_row(v, charges))


def _per_row(v: Tensor, charges: Tensor) -> Tensor:
    return v if charges.dim() == 1 else v.unsqueeze(1)


@functools.lru_cache(maxsize=64)
def _upper_pairs(n: int) -> tuple[Tensor, Tensor]:
    i, j = torch.triu_indices(n, n, offset=1)
    return i, j


def direct_potential(positions: Tensor, charges: Tensor, kernel: PairKernel) -> Tensor:
    """φ_i = Σ_{j≠i} q_j v(r_ij) of one open system (all pairs, O(N²), blocked rows)."""
    n = len(positions)
    phi = torch.zeros_like(charges)
    if n < 2:
        return phi
    if n <= DIRECT_BLOCK:
        i, j = (t.to(positions.device) for t in _upper_pairs(n))
        v = kernel.value(torch.linalg.vector_norm(positions[j] - positions[i], dim=1))
        v = _per_row(v, charges)
        return phi.index_add(0, i, charges[j] * v).index_add(0, j, charges[i] * v)
    rows = torch.arange(n, device=positions.device)
    for start in range(0, n, DIRECT_BLOCK):
        block = rows[start : start + DIRECT_BLOCK]
        diff = positions[None, :, :] - positions[block, None, :]  # (B, N, 3)
        self_pair = block[:, None] == rows[None, :]
        r = torch.linalg.vector_norm(torch.where(self_pair[..., None], 1.0, diff), dim=-1)
        v = torch.where(self_pair, 0.0, kernel.value(r))
        phi = phi.index_add(0, block, v @ charges)
    return phi
