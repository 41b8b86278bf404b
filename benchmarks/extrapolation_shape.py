"""Shape of a scan (torsion, stretch, compression) compared with its reference.

Two numbers per scan, both from energies aligned at the reference's minimum (the model's value
at that geometry is its zero, as the reference's minimum is the reference's zero):

* spurious-minimum depth: how far the model's lowest point falls below the reference's
  lowest point (eV, ≤ 0; 0 when it does not) — the issue's "hole" criterion;
* shape: the stationary points (local minima and maxima, after dropping wiggles smaller than
  ``prominence``) of model and reference are the same kind, in the same order along the
  coordinate, each within ``tolerance`` grid points of the reference's, and their energies are
  ranked in the same order (which minimum is lowest, which barrier is highest) wherever the
  reference separates them by at least ``prominence``.

A torsion scan through a full turn is periodic (its closing point repeats the first one and is
dropped); stretches and compressions are open curves whose ends are not stationary points.
"""

from __future__ import annotations

import numpy as np


def stationary_points(
    energy: np.ndarray, periodic: bool, prominence: float = 0.01
) -> list[tuple[int, str]]:
    """Indices and kinds ("min"/"max") of the local extrema, alternating, wiggles dropped.

    A run of points is reduced to its turning points; a minimum/maximum pair whose energy
    difference is below ``prominence`` (eV) is removed as noise, repeatedly."""
    e = np.asarray(energy, dtype=float)
    n = len(e)
    if n < 3:
        return []
    points = []
    for i in range(n):
        if not periodic and i in (0, n - 1):
            continue
        left, right = e[(i - 1) % n], e[(i + 1) % n]
        if e[i] < left and e[i] <= right:
            points.append((i, "min"))
        elif e[i] > left and e[i] >= right:
            points.append((i, "max"))
    changed = True
    while changed and len(points) > 2:
        changed = False
        count = len(points)
        limit = count if periodic else count - 1
        gaps = [abs(e[points[k][0]] - e[points[(k + 1) % count][0]]) for k in range(limit)]
        k = int(np.argmin(gaps))
        if gaps[k] < prominence:
            drop = {k, (k + 1) % count}
            points = [p for j, p in enumerate(points) if j not in drop]
            changed = True
    if not periodic and len(points) == 2:
        (i, _), (j, _) = points
        if abs(e[i] - e[j]) < prominence:
            points = []
    return points


def _same_order(reference: list[float], model: list[float], prominence: float) -> bool:
    """Every pair of stationary points that the reference separates by at least
    ``prominence`` is ordered the same way by the model; closer pairs (symmetry-equivalent
    minima differing by numerical noise) are ties."""
    for a in range(len(reference)):
        for b in range(a + 1, len(reference)):
            gap = reference[a] - reference[b]
            if abs(gap) >= prominence and np.sign(model[a] - model[b]) != np.sign(gap):
                return False
    return True


def compare(
    reference: np.ndarray,
    model: np.ndarray,
    periodic: bool,
    prominence: float = 0.01,
    tolerance: int = 1,
) -> dict:
    """Spurious-minimum depth and shape agreement of ``model`` against ``reference``."""
    ref = np.asarray(reference, dtype=float)
    pred = np.asarray(model, dtype=float)
    if periodic:
        ref, pred = ref[:-1], pred[:-1]  # the closing point repeats the first one
    zero = int(np.argmin(ref))
    ref_rel, pred_rel = ref - ref[zero], pred - pred[zero]
    ref_points = stationary_points(ref_rel, periodic, prominence)
    pred_points = stationary_points(pred_rel, periodic, prominence)
    n = len(ref)

    def distance(i: int, j: int) -> int:
        d = abs(i - j)
        return min(d, n - d) if periodic else d

    same = len(ref_points) == len(pred_points)
    if same and ref_points:
        # a periodic curve's list may start at a different stationary point: rotate to match
        shifts = range(len(pred_points)) if periodic else [0]
        same = False
        for s in shifts:
            rotated = pred_points[s:] + pred_points[:s]
            if all(
                a[1] == b[1] and distance(a[0], b[0]) <= tolerance
                for a, b in zip(ref_points, rotated, strict=True)
            ):
                ref_e = [ref_rel[i] for i, _ in ref_points]
                pred_e = [pred_rel[i] for i, _ in rotated]
                same = _same_order(ref_e, pred_e, prominence)
                if same:
                    break
    return {
        "spurious_minimum_eV": float(min(0.0, pred_rel.min() - ref_rel.min())),
        "shape_right": bool(same),
        "reference_stationary": [(int(i), k, float(ref_rel[i])) for i, k in ref_points],
        "model_stationary": [(int(i), k, float(pred_rel[i])) for i, k in pred_points],
        "relative_mae_meV": 1e3 * float(np.abs(pred_rel - ref_rel).mean()),
        "reference_max_eV": float(ref_rel.max()),
        "model_max_eV": float(pred_rel.max()),
    }
