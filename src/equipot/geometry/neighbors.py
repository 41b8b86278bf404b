"""Neighbour lists as pure functions.

Convention (same as ``ase.neighborlist.neighbor_list("ijS", ...)``): a pair ``(i, j, S)``
is reported when ``|positions[j] - positions[i] + S @ cell| < cutoff``, with ``S`` an
integer image offset (zero along open directions). Both orderings ``(i, j, S)`` and
``(j, i, -S)`` of every pair are returned.

Both backends first build a *half* list (each pair once), then mirror it and sort it by
``(i, j, S)`` through a single sort of packed integer keys, so they return identical arrays
(up to pairs within rounding error of the cutoff).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from equipot.geometry.cells import reduce_periodic_basis, search_basis, validate_inputs

__all__ = ["neighbor_list"]

_BACKENDS = ("auto", "cells", "vesin")
# Bins per cutoff length along each direction of the cell-list search.
_BINS_PER_CUTOFF = 2
# Candidate pairs distance-checked per vectorised batch (keeps temporaries cache-sized).
_BATCH = 1 << 16

# Open systems up to this size use a direct all-pairs search (no cell list, no sort).
_ALL_PAIRS_MAX_ATOMS = 96

_HalfList = tuple[np.ndarray, np.ndarray, np.ndarray]


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray | Sequence[bool],
    cutoff: float,
    *,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(i, j, shifts)``: all pairs with ``|r_j - r_i + shifts @ cell| < cutoff``.

    Args:
        positions: ``(N, 3)`` Cartesian positions; atoms may lie outside the cell (the
            shifts refer to these unwrapped positions).
        cell: ``(3, 3)`` cell vectors as rows. Rows along open directions are ignored and
            may be zero; rows along periodic directions must be non-degenerate.
        pbc: three booleans, periodicity along each cell vector.
        cutoff: positive cutoff radius (strict ``<``).
        backend: ``"cells"`` (vectorised numpy cell list), ``"vesin"`` or ``"auto"``
            (vesin when importable and the system is fully periodic or fully open,
            otherwise ``"cells"``). Backends return identical arrays, except possibly for
            pairs within rounding error of the cutoff.

    Returns:
        ``i``, ``j``: int64 ``(E,)``; ``shifts``: int64 ``(E, 3)`` image offsets, so the
        pair vector is ``positions[j] - positions[i] + shifts @ cell``. Sorted by ``i``,
        then ``j``, then shift (lexicographically). Every pair appears in both directions.
        Only the self pair (``i == j``, zero shift) is excluded; periodic self-images
        (``i == j``, non-zero shift) are included.

    Raises:
        ValueError: bad shapes, non-finite positions or cutoff, non-positive cutoff,
            degenerate periodic cell vectors, or an unknown backend.
        ImportError: ``backend="vesin"`` but vesin is not installed.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    pos, cell, pbc, cutoff = validate_inputs(positions, cell, pbc, cutoff)
    n_atoms = len(pos)
    if n_atoms == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    if not pbc.any() and n_atoms <= _ALL_PAIRS_MAX_ATOMS and backend == "auto":
        return _all_pairs_open(pos, cutoff)
    # Search in a reduced basis (same lattice, short near-orthogonal vectors): skewed cells
    # then need few images. Shifts found in it map back via ``s @ transform``.
    basis, transform = reduce_periodic_basis(search_basis(cell, pbc), pbc)
    half = None
    # vesin (0.6) is slow for mixed periodicity (pathologically so when atoms extend far
    # along the open directions), so "auto" only uses it for fully periodic / open systems.
    if backend == "vesin" or (backend == "auto" and (pbc.all() or not pbc.any())):
        half = _half_list_vesin(pos, basis, pbc, cutoff, required=backend == "vesin")
    if half is None:
        half = _half_list_cells(pos, basis, pbc, cutoff)
    i, j, shifts = half
    if not np.array_equal(transform, np.eye(3, dtype=np.int64)):
        shifts = shifts @ transform
    return _mirror_and_sort(i, j, shifts, n_atoms)


def _all_pairs_open(pos: np.ndarray, cutoff: float) -> _HalfList:
    """Small molecules: every pair's distance at once; ``nonzero`` is already (i, j) sorted."""
    diff = pos[None, :, :] - pos[:, None, :]
    close = np.einsum("ijk,ijk->ij", diff, diff) < cutoff * cutoff
    np.fill_diagonal(close, False)
    i, j = np.nonzero(close)
    return i, j, np.zeros((len(i), 3), np.int64)


def _half_list_vesin(
    pos: np.ndarray, basis: np.ndarray, pbc: np.ndarray, cutoff: float, *, required: bool
) -> _HalfList | None:
    """Half list from vesin, or ``None`` when vesin is unavailable or cannot do this pbc."""
    try:
        import vesin
    except ImportError as err:
        if required:
            raise ImportError(
                "backend='vesin' needs the vesin package (pip install vesin)"
            ) from err
        return None
    mixed = bool(pbc.any() and not pbc.all())
    periodic: bool | np.ndarray = pbc.copy() if mixed else bool(pbc[0])
    calculator = vesin.NeighborList(cutoff=cutoff, full_list=False)
    try:
        i, j, shifts = calculator.compute(
            points=pos, box=basis, periodic=periodic, quantities="ijS"
        )
    except (TypeError, ValueError, RuntimeError, ctypes.ArgumentError):
        if mixed:  # older vesin releases only take one periodic flag for all directions
            return None
        raise
    return i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64)


def _half_list_cells(
    pos: np.ndarray, basis: np.ndarray, pbc: np.ndarray, cutoff: float
) -> _HalfList:
    """Each pair once, found with a cell list on a grid padded with periodic ghost atoms."""
    n_atoms = len(pos)
    inv = np.linalg.inv(basis)
    heights = 1.0 / np.linalg.norm(inv, axis=0)  # distance between opposite cell faces
    frac = pos @ inv
    image = np.zeros((n_atoms, 3), np.int64)
    image[:, pbc] = np.floor(frac[:, pbc])
    frac -= image
    wrapped = pos - image @ basis

    # Grid: periodic directions span one cell, open ones the atoms' extent.
    lo = np.where(pbc, 0.0, frac.min(axis=0))
    span = np.where(pbc, 1.0, frac.max(axis=0) - lo)
    extent = span * heights
    n_bins = np.maximum(1, np.floor(_BINS_PER_CUTOFF * extent / cutoff)).astype(np.int64)
    bin_limit = max(1000, 8 * n_atoms)  # memory stays linear for sparse or huge open systems
    while True:
        margin = np.ceil(cutoff * n_bins / np.where(extent > 0, extent, np.inf)).astype(np.int64)
        margin = np.where(pbc, margin, np.minimum(margin, n_bins - 1))
        grid = n_bins + 2 * margin * pbc
        if np.prod(grid) <= bin_limit or n_bins.max() == 1:
            break
        scale = (bin_limit / np.prod(grid)) ** (1 / 3)
        n_bins = np.maximum(1, np.minimum(n_bins - 1, np.floor(n_bins * scale))).astype(np.int64)

    scaled = (frac - lo) / np.where(span > 0, span, 1.0) * n_bins
    bins = np.minimum(scaled.astype(np.int64), n_bins - 1) + margin * pbc

    # Ghost atoms: periodic images whose bin falls inside the padded grid.
    orig = np.arange(n_atoms)
    ghost_shift = np.zeros((n_atoms, 3), np.int64)
    for k in np.flatnonzero(pbc):
        reps = -(-margin[k] // n_bins[k])
        parts = [(wrapped, bins, orig, ghost_shift)]
        for t in range(-reps, reps + 1):
            b_k = bins[:, k] + t * n_bins[k]
            sel = np.flatnonzero((b_k >= 0) & (b_k < grid[k]))
            if t == 0 or sel.size == 0:
                continue
            g_bins, g_shift = bins[sel], ghost_shift[sel]
            g_bins[:, k] = b_k[sel]
            g_shift[:, k] = t
            parts.append((wrapped[sel] + t * basis[k], g_bins, orig[sel], g_shift))
        wrapped, bins, orig, ghost_shift = (np.concatenate(p) for p in zip(*parts, strict=True))

    # Sort all atoms by flat bin id (axis 2 fastest, so bins along axis 2 are contiguous).
    flat = (bins[:, 0] * grid[1] + bins[:, 1]) * grid[2] + bins[:, 2]
    order = np.argsort(flat, kind="stable")
    flat, bins, orig, ghost_shift = flat[order], bins[order], orig[order], ghost_shift[order]
    xyz = [np.ascontiguousarray(wrapped[order, c]) for c in range(3)]
    starts = np.zeros(int(np.prod(grid)) + 1, np.int64)
    np.cumsum(np.bincount(flat, minlength=len(starts) - 1), out=starts[1:])

    # Per real atom, contiguous candidate segments: one per (d0, d1) row of bins, with
    # rows in the forward half; row (0, 0) starts right after the atom itself.
    real = np.flatnonzero(order < n_atoms)
    b0, b1, b2 = bins[real].T
    z_lo = np.maximum(b2 - margin[2], 0)
    z_hi = np.minimum(b2 + margin[2], grid[2] - 1) + 1
    seg_start = [real + 1]
    seg_end = [starts[flat[real] - b2 + z_hi]]
    for d0 in range(0, int(margin[0]) + 1):
        for d1 in range(-int(margin[1]), int(margin[1]) + 1):
            if d0 == 0 and d1 <= 0:
                continue
            t0, t1 = b0 + d0, b1 + d1
            ok = (t0 < grid[0]) & (t1 >= 0) & (t1 < grid[1])
            row = np.where(ok, (t0 * grid[1] + t1) * grid[2], 0)
            seg_start.append(starts[row + z_lo])
            seg_end.append(np.where(ok, starts[row + z_hi], seg_start[-1]))
    seg_start = np.stack(seg_start, axis=1)
    seg_len = np.stack(seg_end, axis=1) - seg_start
    per_atom = seg_len.sum(axis=1)

    # Distance-check candidates in batches of consecutive atoms.
    cum = np.cumsum(per_atom)
    cuts = np.searchsorted(cum, np.arange(_BATCH, cum[-1] + _BATCH, _BATCH), side="left")
    cuts = np.unique(np.concatenate([[0], np.minimum(cuts + 1, len(real)), [len(real)]]))
    cutoff2 = cutoff * cutoff
    keep_i, keep_j = [], []
    for a0, a1 in pairwise(cuts.tolist()):
        lens = seg_len[a0:a1].ravel()
        total = int(per_atom[a0:a1].sum())
        if total == 0:
            continue
        # Candidate indices jj: consecutive runs seg_start .. seg_start + len, built as a
        # cumulative sum of steps (+1 inside a run, a jump at each run's first element).
        nonempty = np.flatnonzero(lens)
        run_start, run_len = seg_start[a0:a1].ravel().take(nonempty), lens.take(nonempty)
        step = np.ones(total, np.int64)
        step[0] = run_start[0]
        first = np.cumsum(run_len[:-1])
        step[first] = run_start[1:] - (run_start[:-1] + run_len[:-1] - 1)
        jj = np.cumsum(step)
        ii = np.repeat(real[a0:a1], per_atom[a0:a1])
        d2 = xyz[0].take(jj)
        d2 -= xyz[0].take(ii)
        d2 *= d2
        for x in xyz[1:]:
            d = x.take(jj)
            d -= x.take(ii)
            d *= d
            d2 += d
        hits = np.flatnonzero(d2 < cutoff2)
        keep_i.append(ii.take(hits))
        keep_j.append(jj.take(hits))
    if not keep_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    ii, jj = np.concatenate(keep_i), np.concatenate(keep_j)
    # S = T_j + o_i - o_j for ghost image T and wrapping offsets o (``take`` is much faster
    # than fancy indexing for row gathers).
    offset = ghost_shift - image.take(orig, axis=0)
    return orig.take(ii), orig.take(jj), offset.take(jj, axis=0) - offset.take(ii, axis=0)


def _mirror_and_sort(i: np.ndarray, j: np.ndarray, shifts: np.ndarray, n_atoms: int) -> _HalfList:
    """Add the reversed pairs ``(j, i, -S)`` and sort everything by ``(i, j, S)``."""
    smax = max(int(shifts.max()), -int(shifts.min())) if shifts.size else 0
    s_bits = (2 * smax).bit_length()
    n_bits = max((n_atoms - 1).bit_length(), 1)
    if 2 * n_bits + 3 * s_bits > 63:  # keys do not fit in int64: generic (slower) sort
        ii, jj = np.concatenate([i, j]), np.concatenate([j, i])
        ss = np.concatenate([shifts, -shifts])
        order = np.lexsort((ss[:, 2], ss[:, 1], ss[:, 0], jj, ii))
        return ii[order], jj[order], ss[order]

    # key = i | j | s0 | s1 | s2 (bit fields, most significant first), s offset by smax.
    # The shift fields are built arithmetically: ``code`` is linear in the shift, the bias
    # makes every field non-negative, so fields never borrow or carry into each other.
    half, i_pos, j_pos = len(i), n_bits + 3 * s_bits, 3 * s_bits
    code = (shifts[:, 0] << (2 * s_bits)) + (shifts[:, 1] << s_bits) + shifts[:, 2]
    bias = smax * ((1 << (2 * s_bits)) + (1 << s_bits) + 1)
    keys = np.empty(2 * half, np.int64)
    for out, a, b, sign in ((keys[:half], i, j, 1), (keys[half:], j, i, -1)):
        np.left_shift(a, i_pos, out=out)
        out |= b << j_pos
        out += sign * code + bias
    keys.sort()

    s_mask = (1 << s_bits) - 1
    codes = keys & ((1 << (3 * s_bits)) - 1)
    if 3 * s_bits <= 12:  # decode shifts through a small lookup table (fast row gather)
        table = np.arange(1 << (3 * s_bits), dtype=np.int64)[:, None]
        table = (table >> (np.arange(2, -1, -1) * s_bits)) & s_mask
        out_s = (table - smax).take(codes, axis=0)
    else:
        out_s = np.stack([(codes >> ((2 - c) * s_bits)) & s_mask for c in range(3)], axis=1)
        out_s -= smax
    return keys >> i_pos, (keys >> j_pos) & ((1 << n_bits) - 1), out_s
