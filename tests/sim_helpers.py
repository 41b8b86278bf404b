"""Helpers for the simulation tests: block statistics of correlated time series."""

from __future__ import annotations

import numpy as np


def block_mean(series: np.ndarray, n_blocks: int = 10) -> tuple[float, float]:
    """Mean of ``series`` (time, systems) and its standard error from block averages
    (blocks of consecutive samples per independent system)."""
    blocks = _blocks(series, n_blocks).mean(1)  # (n_blocks, systems)
    return float(blocks.mean()), float(blocks.std(ddof=1) / np.sqrt(blocks.size))


def block_variance(series: np.ndarray, n_blocks: int = 10) -> tuple[float, float]:
    """Variance about the exact-or-global mean per system, and its standard error from the
    spread of block estimates."""
    centred = series - series.mean(0, keepdims=True)
    blocks = _blocks(centred**2, n_blocks).mean(1)
    return float(blocks.mean()), float(blocks.std(ddof=1) / np.sqrt(blocks.size))


def _blocks(series: np.ndarray, n_blocks: int) -> np.ndarray:
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    n = len(series) // n_blocks * n_blocks
    return series[:n].reshape(n_blocks, -1, series.shape[1])
