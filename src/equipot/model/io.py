"""Model files: weights, config and versions as data (safetensors), never a pickle.

Loading parses a JSON header and raw tensor bytes; nothing in a model file can execute code.
A file that is not a safetensors container with our format tag is refused with a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from equipot.model.config import MODEL_SCHEMA_VERSION
from equipot.model.energy_model import EnergyModel
from equipot.version import __version__

FORMAT_TAG = "equipot-model"


def save_model(
    model: EnergyModel,
    path: str | Path,
    extra: dict | None = None,
    *,
    heads: dict[str, EnergyModel] | None = None,
    head_name: str | None = None,
) -> Path:
    """Write ``model`` to ``path`` (weights in the model's dtype, config as JSON).

    ``heads``: further heads sharing ``model``'s backbone (:mod:`equipot.transfer.heads`);
    ``head_name`` names ``model``'s own head.
    """
    from equipot.transfer.heads import DEFAULT_HEAD, head_metadata

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT_TAG,
        "schema_version": str(MODEL_SCHEMA_VERSION),
        "equipot_version": __version__,
        "torch_version": torch.__version__,
        "config": model.config.model_dump_json(),
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if heads or head_name:
        more, head_tensors = head_metadata(head_name or DEFAULT_HEAD, heads or {})
        metadata.update(more)
        tensors.update(head_tensors)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)  # atomic: an interrupted save never leaves a truncated model file
    return path


def read_model_metadata(path: str | Path) -> dict:
    """The metadata header of a model file (format tag, versions, config JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"{path} is not an equipot model file (expected a safetensors container written by "
            f"equipot; pickles and other formats are refused because loading them can run code): "
            f"{exc}"
        ) from None
    if metadata.get("format") != FORMAT_TAG:
        raise ValueError(
            f"{path} is a safetensors file but not an equipot model (format tag missing)"
        )
    version = int(metadata.get("schema_version", "0"))
    if version > MODEL_SCHEMA_VERSION:
        raise ValueError(
            f"{path} uses model schema {version}, newer than this equipot "
            f"({MODEL_SCHEMA_VERSION}); upgrade equipot to read it"
        )
    return metadata


def load_model(
    path: str | Path, *, dtype: torch.dtype | None = None, head: str | None = None
) -> EnergyModel:
    """Load a model file written by :func:`save_model` (optionally cast to ``dtype``);
    ``head`` selects a head of a multi-head file (default: its default head)."""
    from equipot.transfer.heads import select_head

    metadata = read_model_metadata(path)
    config, state = select_head(Path(path), metadata, load_file(str(path)), head)
    model = EnergyModel(config)
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the stored config (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    stored_dtype = next(iter(state.values())).dtype
    model.load_state_dict(state)
    model = model.to(dtype or stored_dtype)
    return model
