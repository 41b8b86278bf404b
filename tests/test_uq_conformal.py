"""Split conformal coverage on synthetic exchangeable data, against its finite-sample bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from equipot.uq.conformal import conformal_quantile, coverage


@pytest.mark.parametrize("alpha", [0.1, 0.05])
def test_coverage_one_atom_per_frame_is_the_exact_finite_sample_value(alpha):
    """Continuous iid scores: P(test ≤ q̂) = ⌈(1−α)(n+1)⌉/(n+1) ∈ [1−α, 1−α+1/(n+1)]."""
    rng = np.random.default_rng(0)
    n, trials = 47, 20000
    scores = rng.lognormal(size=(trials, n + 1))
    frames = np.arange(n)
    hits = np.array([s[n] <= conformal_quantile(s[:n], frames, alpha) for s in scores])
    exact = math.ceil((1 - alpha) * (n + 1)) / (n + 1)
    assert 1 - alpha <= exact <= 1 - alpha + 1 / (n + 1)
    mc = math.sqrt(exact * (1 - exact) / trials)
    assert abs(hits.mean() - exact) < 4 * mc


def test_frame_weighted_coverage_with_correlated_atoms():
    """Frames of 1–30 atoms whose errors share a frame-wide factor (atoms are not
    exchangeable, frames are): a random atom of a test frame is covered ≥ 1 − α."""
    rng = np.random.default_rng(1)
    alpha, n, trials = 0.1, 40, 3000
    covered = []
    for _ in range(trials):
        sizes = rng.integers(1, 31, n + 1)
        factor = rng.lognormal(0.0, 0.8, n + 1)  # frame-wide error level
        frames = np.repeat(np.arange(n + 1), sizes)
        sigma = rng.uniform(0.5, 2.0, frames.size)  # per-atom uncertainty estimate
        error = sigma * factor[frames] * np.abs(rng.standard_normal(frames.size))
        scores = error / sigma
        calib = frames < n
        q = conformal_quantile(scores[calib], frames[calib], alpha)
        test = ~calib
        covered.append(coverage(error[test], q * sigma[test]))
    mean = float(np.mean(covered))
    mc = float(np.std(covered)) / math.sqrt(trials)
    assert mean >= 1 - alpha - 4 * mc
    assert mean <= 1 - alpha + 1 / (n + 1) + 4 * mc  # and not needlessly wide


def test_quantile_edge_cases():
    frames = np.arange(5)
    assert conformal_quantile(np.ones(5), frames, 0.05) == math.inf  # n < (1−α)/α
    assert conformal_quantile(np.arange(1.0, 20.0), np.arange(19), 0.1) == 18.0
    with pytest.raises(ValueError, match="alpha"):
        conformal_quantile(np.ones(5), frames, 1.5)
    with pytest.raises(ValueError, match="NaN"):
        conformal_quantile(np.array([1.0, np.nan]), np.arange(2), 0.1)
