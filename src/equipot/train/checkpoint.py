"""Training checkpoints: plain tensors and containers, loaded with ``weights_only=True``.

A checkpoint holds everything needed to continue a run exactly: model weights, optimiser,
learning-rate schedule, EMA, random-number generator states (torch, numpy, python), the
training plan, the position inside the current epoch (and its running sums), best validation
loss, the history of metrics, the resolved training config, the model config (with its
statistics) and the content hashes of the data files. It is written atomically and fsynced
(:func:`equipot.persist.atomic_write`): a kill at any moment leaves the previous complete
checkpoint or the new one.

Loading refuses torch releases whose ``weights_only`` unpickler can be made to run code
(before 2.10: CVE-2025-32434, CVE-2026-24747), and anything that is not a checkpoint of ours.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import torch

from equipot.persist import atomic_write
from equipot.version import __version__

CHECKPOINT_FORMAT = "equipot-checkpoint"
CHECKPOINT_SCHEMA_VERSION = 2
SAFE_TORCH = (2, 10)  # first release without a known weights_only bypass
REQUIRED = {
    "train_config": str,
    "model_config": str,
    "model": dict,
    "optimizer": dict,
    "schedule": dict,
    "rng": dict,
    "progress": dict,
    "plan": dict,
    "history": list,
}


class CheckpointError(ValueError):
    """A file that cannot be resumed from (not ours, damaged, or from a newer equipot)."""


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
    """Write ``state`` (plus format tags) atomically and durably to ``path``."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "schema_version": CHECKPOINT_SCHEMA_VERSION,
        "equipot_version": __version__,
        **state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, buffer.getvalue())


def torch_version_tuple(version: str | None = None) -> tuple[int, int]:
    parts = (version or torch.__version__).split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def check_torch_is_safe() -> None:
    if torch_version_tuple() < SAFE_TORCH:
        raise CheckpointError(
            f"torch {torch.__version__} can run code from a crafted checkpoint even with "
            f"weights_only=True (CVE-2025-32434, CVE-2026-24747); install torch >= "
            f"{SAFE_TORCH[0]}.{SAFE_TORCH[1]} to resume training"
        )


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    check_torch_is_safe()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"{path} is not a readable equipot checkpoint (refused by the weights-only "
            f"loader, which never runs code from the file): {type(exc).__name__}: {reason}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an equipot checkpoint (format tag missing)")
    version = state.get("schema_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: schema_version is {version!r}, not a number")
    if version > CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(f"{path} was written by a newer equipot; upgrade to resume it")
    if version < CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(
            f"{path} was written by an older equipot (checkpoint schema {version}) without a "
            "stored training plan; it cannot be resumed exactly: start a new run"
        )
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind):
            got = type(state.get(key)).__name__ if key in state else "missing"
            raise CheckpointError(f"{path}: key {key!r} should be a {kind.__name__}, got {got}")
    for key in ("train_config", "model_config"):
        try:
            json.loads(state[key])
        except ValueError:
            raise CheckpointError(f"{path}: key {key!r} is not valid JSON") from None
    return state


def config_json(config) -> str:
    return json.dumps(config.model_dump(mode="json"))
