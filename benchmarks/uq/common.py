"""Shared pieces of the uncertainty benchmarks: evaluation sets, coverage, ranks, AUROC."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from ase.io import write
from scipy.stats import spearmanr

from equipot.calculator import frozen_copy
from equipot.uq.calibration import CalibrationSet, calibrate, collect, scores
from equipot.uq.workflow import open_dataset


def collect_frames(models, frames, *, last_layer_forces=False) -> CalibrationSet:
    """Errors and uncertainty ingredients of ``models`` on labelled ASE frames."""
    with tempfile.TemporaryDirectory(prefix="uq-bench-") as tmp:
        path = Path(tmp) / "frames.extxyz"
        write(path, frames, format="extxyz")
        dataset = open_dataset(str(path), models[0], Path(tmp) / "cache")
        frozen = [frozen_copy(m, torch.float64, "cpu") for m in models]
        data = collect(frozen, dataset, last_layer_forces=last_layer_forces)
        dataset.close()
    return data


def sigma(data: CalibrationSet, uq, name: str) -> np.ndarray:
    committee = {"force_scale": uq.committee_force_scale}
    return scores(data, uq, committee)[name]


def ball_coverage(data: CalibrationSet, uq, alpha_name: str | None = None) -> dict:
    """Coverage of the calibrated ball on ``data``: per-frame average and pooled atoms."""
    ball = uq.ball
    s = np.sqrt(sigma(data, uq, ball.score) ** 2 + ball.floor**2)
    radius = ball.quantile * s
    error = np.linalg.norm(data.force_error, axis=1)
    inside = error <= radius
    _, index = np.unique(data.frame, return_inverse=True)
    per_frame = np.bincount(index, inside) / np.bincount(index)
    return {
        "coverage": float(per_frame.mean()),
        "coverage_atoms": float(inside.mean()),
        "mean_radius": float(radius.mean()),
    }


def calibrated(data: CalibrationSet, uq, *, committee: bool, alpha: float, score: str):
    return calibrate(data, uq, committee=committee, alpha=alpha, score=score, fit_fraction=0.5)


def per_frame(values: np.ndarray, frames: np.ndarray, how: str = "rms") -> np.ndarray:
    _, index = np.unique(frames, return_inverse=True)
    counts = np.bincount(index)
    if how == "max":
        out = np.full(len(counts), -np.inf)
        np.maximum.at(out, index, values)
        return out
    if how == "mean":
        return np.bincount(index, values) / counts
    return np.sqrt(np.bincount(index, values**2) / counts)


def frame_force_rmse(data: CalibrationSet) -> np.ndarray:
    return per_frame(np.sqrt((data.force_error**2).mean(1)), data.frame, "rms")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(spearmanr(x, y).statistic)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    scores_ = np.concatenate([negatives, positives])
    ranks = np.argsort(np.argsort(scores_, kind="stable"), kind="stable") + 1.0
    # average ranks over ties
    order = np.argsort(scores_, kind="stable")
    sorted_scores = scores_[order]
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for s0, c in zip(start, counts, strict=True):
        if c > 1:
            ranks[order[s0 : s0 + c]] = s0 + (c + 1) / 2.0
    n0, n1 = len(negatives), len(positives)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2.0) / (n0 * n1))
