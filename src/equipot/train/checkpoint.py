"""Training checkpoints: plain tensors and containers, loaded with ``weights_only=True``.

A checkpoint holds everything needed to continue a run exactly: model weights, optimiser,
learning-rate schedule, EMA, random-number generator states (torch, numpy, python), epoch,
best validation loss, the history of metrics, the resolved training config and the model
config (with its statistics). Files are written to a temporary name and renamed, so an
interrupted write never leaves a truncated checkpoint.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from equipot.version import __version__

CHECKPOINT_FORMAT = "equipot-checkpoint"
CHECKPOINT_SCHEMA_VERSION = 1


def rng_state() -> dict:
    np_state = np.random.get_state()  # noqa: NPY002 (the global state, saved as is)
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, state: dict) -> Path:
    """Write ``state`` (plus format tags) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "schema_version": CHECKPOINT_SCHEMA_VERSION,
        "equipot_version": __version__,
        **state,
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable equipot checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an equipot checkpoint (format tag missing)")
    if int(state.get("schema_version", 0)) > CHECKPOINT_SCHEMA_VERSION:
        raise ValueError(f"{path} was written by a newer equipot; upgrade to resume it")
    return state


def config_json(config) -> str:
    return json.dumps(config.model_dump(mode="json"))
