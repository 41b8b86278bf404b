"""Reproducible train / validation splits."""

from __future__ import annotations

import numpy as np


def split_indices(
    num_frames: int,
    *,
    valid_count: int | None = None,
    valid_fraction: float = 0.05,
    train_count: int | None = None,
    seed: int = 0,
    test_count: int = 0,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle ``range(num_frames)`` with ``seed``; the first part validates, the rest trains.

    ``valid_count`` (else ``round(valid_fraction · num_frames)``, at least 1 when there are two
    or more frames) frames go to validation; ``train_count`` caps the training frames. With
    ``test_count`` > 0 the last ``test_count`` shuffled frames are a test set, returned third.
    """
    if num_frames < 2:
        raise ValueError(
            f"need at least 2 frames to split into training and validation, got {num_frames}"
        )
    n_valid = valid_count if valid_count is not None else round(valid_fraction * num_frames)
    n_valid = min(max(int(n_valid), 1), num_frames - 1)
    order = np.random.default_rng(seed).permutation(num_frames)
    if test_count:
        if test_count >= num_frames - n_valid:
            raise ValueError(f"test_count={test_count} leaves no frames for training")
        test, order = order[num_frames - test_count :], order[: num_frames - test_count]
    valid, train = order[:n_valid], order[n_valid:]
    if train_count is not None:
        if train_count > len(train):
            raise ValueError(
                f"train_count={train_count} but only {len(train)} frames are left for training"
            )
        train = train[:train_count]
    if test_count:
        return np.sort(train), np.sort(valid), np.sort(test)
    return np.sort(train), np.sort(valid)
