"""Split conformal prediction of per-atom force-error balls.

Each calibration atom i of frame k gets the nonconformity score s_i = ‖F_i − F_i^ref‖ / σ_i,
σ_i a per-atom uncertainty (:mod:`equipot.uq.calibration`). Frames, not atoms, are the
exchangeable units (atoms of one frame share its errors), so the quantile is taken of the
frame-averaged empirical distribution F̄(q) = (1/n) Σ_k F_k(q), F_k the fraction of frame k's
atoms with s ≤ q:

    q̂ = inf { q : F̄(q) ≥ (1 − α)(n + 1)/n },      R_i = q̂ σ_i

Guarantee: for a test frame exchangeable with the n calibration frames, a random atom of it
lies in its ball ‖F − F^ref‖ ≤ R with probability ≥ 1 − α. (With G(q) the average of all
n + 1 frames' F_k, (n+1)·G(q̂) ≥ n·F̄(q̂) ≥ (1−α)(n+1), so q̂ ≥ q* = inf{q : G(q) ≥ 1−α},
and E F_test(q*) = E G(q*) ≥ 1 − α by exchangeability.) With one atom per frame this is the
textbook split conformal quantile, whose coverage is also at most 1 − α + 1/(n + 1)
(without ties). It needs n ≥ (1 − α)/α frames; otherwise q̂ = ∞.
"""

from __future__ import annotations

import numpy as np


def conformal_quantile(scores: np.ndarray, frames: np.ndarray, alpha: float) -> float:
    """q̂ of the module docstring; ``scores`` (M,) per atom, ``frames`` (M,) their frame ids."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    scores = np.asarray(scores, dtype=np.float64)
    frames = np.asarray(frames)
    if scores.shape != frames.shape or scores.ndim != 1:
        raise ValueError("scores and frames must be 1-D arrays of the same length")
    if not np.all(np.isfinite(scores) | (scores == np.inf)) or np.any(scores < 0):
        raise ValueError("conformal scores must be non-negative (NaN found or negative)")
    _, frame_index, counts = np.unique(frames, return_inverse=True, return_counts=True)
    n = len(counts)
    level = (1.0 - alpha) * (n + 1) / n
    if n == 0 or level > 1.0:
        return float("inf")
    order = np.argsort(scores, kind="stable")
    weights = 1.0 / (n * counts[frame_index[order]])
    cumulative = np.cumsum(weights)
    k = int(np.searchsorted(cumulative, level - 1e-12, side="left"))
    return float(scores[order[min(k, len(order) - 1)]])


def coverage(errors: np.ndarray, radii: np.ndarray, frames: np.ndarray | None = None) -> float:
    """Fraction of atoms with error ≤ radius (averaged per frame first if ``frames``)."""
    inside = np.asarray(errors) <= np.asarray(radii)
    if frames is None:
        return float(inside.mean())
    _, index = np.unique(frames, return_inverse=True)
    per_frame = np.bincount(index, inside) / np.bincount(index)
    return float(per_frame.mean())
