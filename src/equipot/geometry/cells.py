"""Cell helpers for the neighbour search: input validation and a full-rank search basis.

Conventions: ``cell`` holds the three cell vectors as *rows* (``cell[k]`` is vector k, the
ASE convention), ``pbc[k]`` says whether the system is periodic along ``cell[k]``, and
fractional coordinates are ``positions @ inv(cell)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

# A periodic cell vector shorter than this (Å) is treated as zero-length.
_ZERO_LENGTH = 1e-10
# Periodic cell vectors whose normalised cross product / triple product is below this are
# treated as linearly dependent.
_DEPENDENCE_TOL = 1e-8


def validate_inputs(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray | Sequence[bool],
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Check and convert neighbour-list inputs.

    Returns ``(positions, cell, pbc, cutoff)`` as float64 ``(N, 3)``, float64 ``(3, 3)``,
    bool ``(3,)`` and ``float``. Raises ``ValueError`` naming the first problem found.
    """
    try:
        cutoff = float(cutoff)
    except (TypeError, ValueError):
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff!r}") from None
    if not (np.isfinite(cutoff) and cutoff > 0.0):
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff!r}")

    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got shape {pos.shape}")
    finite = np.isfinite(pos).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"positions of atom {bad} are not finite: {pos[bad].tolist()}")

    cell_arr = np.asarray(cell, dtype=np.float64)
    if cell_arr.shape != (3, 3):
        raise ValueError(
            f"cell must have shape (3, 3) (cell vectors as rows), got {cell_arr.shape}"
        )
    if not np.isfinite(cell_arr).all():
        raise ValueError(f"cell contains non-finite values: {cell_arr.tolist()}")

    pbc_arr = np.asarray(pbc)
    if pbc_arr.shape != (3,):
        raise ValueError(
            f"pbc must have exactly 3 entries (one per cell vector), got shape {pbc_arr.shape}"
        )
    pbc_arr = pbc_arr.astype(bool)

    check_periodic_cell(cell_arr, pbc_arr)
    return pos, cell_arr, pbc_arr, cutoff


def check_periodic_cell(cell: np.ndarray, pbc: np.ndarray) -> None:
    """Raise ``ValueError`` if the cell vectors along periodic directions are degenerate.

    Periodic vectors must be non-zero and linearly independent; vectors along open
    directions are not checked (they may be zero).
    """
    periodic = [int(k) for k in np.flatnonzero(pbc)]
    lengths = np.linalg.norm(cell, axis=1)
    for k in periodic:
        if not lengths[k] > _ZERO_LENGTH:
            raise ValueError(
                f"cell vector {k} has zero length (|cell[{k}]| = {lengths[k]:.3g}) but "
                f"pbc[{k}] is True; a periodic direction needs a non-zero cell vector"
            )
    unit = cell / np.where(lengths > 0.0, lengths, 1.0)[:, None]
    for a, b in combinations(periodic, 2):
        if np.linalg.norm(np.cross(unit[a], unit[b])) < _DEPENDENCE_TOL:
            raise ValueError(
                f"periodic cell vectors {a} and {b} are parallel (linearly dependent); "
                "the cell is singular along the periodic directions"
            )
    if len(periodic) == 3 and abs(np.linalg.det(unit)) < _DEPENDENCE_TOL:
        raise ValueError(
            "periodic cell vectors 0, 1 and 2 are coplanar (linearly dependent); "
            "the cell has zero volume"
        )


def search_basis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Full-rank basis (rows) equal to ``cell`` along periodic directions.

    Open-direction rows are replaced by an orthonormal basis of the orthogonal complement
    of the periodic vectors (the identity for a fully open system). Shifts along open
    directions are always zero, so results never depend on these rows.
    """
    basis = np.array(cell, dtype=np.float64)
    periodic = np.flatnonzero(pbc)
    open_dirs = np.flatnonzero(~pbc)
    if open_dirs.size:
        if periodic.size:
            q, _ = np.linalg.qr(basis[periodic].T, mode="complete")
            basis[open_dirs] = q[:, periodic.size :].T
        else:
            basis[:] = np.eye(3)
    return basis


def reduce_periodic_basis(basis: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy (Minkowski-style) lattice reduction of the periodic rows of ``basis``.

    Returns ``(reduced, transform)`` with ``transform`` a unimodular int64 ``(3, 3)`` matrix
    acting only on periodic rows (identity elsewhere) and ``reduced = transform @ basis``.
    The reduced vectors span the same lattice but are as short and orthogonal as possible,
    so strongly skewed cells need far fewer periodic images. A shift ``s`` expressed in the
    reduced basis is ``s @ transform`` in the original one.
    """
    periodic = np.flatnonzero(pbc)
    transform = np.eye(3, dtype=np.int64)
    if periodic.size < 2:
        return np.array(basis, dtype=np.float64), transform
    lattice = np.array(basis[periodic], dtype=np.float64)
    k = len(lattice)
    mat = np.eye(k, dtype=np.int64)  # current vectors are mat @ lattice
    # Moves: subtract from one vector an integer multiple of another, or (3D) of a +- b.
    combos = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1)]
    combos += [(0, 1, 1), (0, 1, -1)]
    all_moves = np.array([c[:k] for c in combos if not any(c[k:])], dtype=np.int64)
    moves = [all_moves[all_moves[:, t] == 0] for t in range(k)]
    for _ in range(1000):
        changed = False
        for target in range(k):
            vec = mat @ lattice
            directions = moves[target] @ vec
            mu = np.round(directions @ vec[target] / np.sum(directions**2, axis=1))
            new = vec[target] - mu[:, None] * directions
            norm2 = np.sum(new**2, axis=1)
            best = int(np.argmin(norm2))
            if mu[best] != 0 and norm2[best] < (vec[target] @ vec[target]) * (1.0 - 1e-12):
                mat[target] -= int(mu[best]) * (moves[target][best] @ mat)
                changed = True
        if not changed:
            break
    transform[np.ix_(periodic, periodic)] = mat
    return transform @ basis, transform
