"""Edge geometry as pure functions of positions and cell."""

from __future__ import annotations

import numpy as np
from torch import Tensor

MIN_DISTANCE = 0.1  # Å; closer pairs are rejected as unphysical input


def edge_vectors(
    positions: Tensor, cell: Tensor, batch: Tensor, edge_index: Tensor, edge_shift: Tensor
) -> Tensor:
    """``r_ij = r_j - r_i + S_ij · cell_s`` for every edge ``(i, j, S_ij)`` of system ``s``.

    Shapes: positions (N, 3), cell (S, 3, 3), batch (N,), edge_index (2, E), edge_shift (E, 3).
    """
    i, j = edge_index[0], edge_index[1]
    direct = positions.index_select(0, j) - positions.index_select(0, i)
    if cell.shape[0] == 1:
        offsets = edge_shift @ cell[0]
    else:  # Σ_k S_k · cell_s[k]: three broadcast products (a batched 3×3 matvec is slow)
        rows = cell.index_select(0, batch.index_select(0, i))  # (E, 3, 3)
        offsets = (edge_shift.unsqueeze(-1) * rows).sum(1)
    # index_select, not advanced indexing: its backward is a fast index_add
    return direct + offsets


def check_min_distance(
    positions: np.ndarray,
    cell: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    shifts: np.ndarray,
    min_distance: float = MIN_DISTANCE,
) -> None:
    """Raise ``ValueError`` naming the first pair of atoms closer than ``min_distance``."""
    if len(i) == 0:
        return
    d = np.linalg.norm(positions[j] - positions[i] + shifts @ cell, axis=1)
    bad = np.flatnonzero(d < min_distance)
    if bad.size:
        k = bad[np.argmin(d[bad])]
        image = "" if not shifts[k].any() else f" (periodic image {shifts[k].tolist()})"
        raise ValueError(
            f"atoms {int(i[k])} and {int(j[k])}{image} are {d[k]:.4f} Å apart, closer than "
            f"{min_distance} Å: the structure is unphysical (overlapping atoms?)"
        )
