"""Model files: weights, config and versions as data (safetensors), never a pickle.

Loading parses a JSON header and raw tensor bytes; nothing in a model file can execute code.
A file that is not a safetensors container with our format tag is refused with a clear error,
and so is one whose tensors do not match its stored config (names, shapes — checked against a
model built on the ``meta`` device, so a tampered config cannot make us allocate — dtypes,
finite values).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from equipot.model.config import MODEL_SCHEMA_VERSION, ModelConfig
from equipot.model.energy_model import EnergyModel
from equipot.uq.store import Uncertainty, split_state
from equipot.version import __version__

FORMAT_TAG = "equipot-model"
ENGINE_PREFIX = "engine."  # packed inference-engine tensors (equipot lammps export)


def save_model(
    model: EnergyModel,
    path: str | Path,
    extra: dict | None = None,
    *,
    heads: dict[str, EnergyModel] | None = None,
    head_name: str | None = None,
    engine: dict[str, torch.Tensor] | None = None,
    engine_format: int | None = None,
) -> Path:
    """Write ``model`` to ``path`` (weights in the model's dtype, config as JSON, and its
    uncertainty fits and calibration if it has them, see :mod:`equipot.uq.store`).

    ``heads``: further heads sharing ``model``'s backbone (:mod:`equipot.transfer.heads`);
    ``head_name`` names ``model``'s own head. ``engine``: packed inference-engine tensors
    (:func:`equipot.model.inference.pack_engine`) stored beside the weights under ``engine.``
    (read by the LAMMPS plugin, ignored by :func:`load_model`), with their layout version
    ``engine_format``.
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
    if engine is not None:
        metadata["engine_format"] = str(engine_format)
        tensors.update(
            {ENGINE_PREFIX + k: v.detach().contiguous().cpu() for k, v in engine.items()}
        )
    if model.uncertainty is not None:
        metadata["uncertainty"] = model.uncertainty.metadata()
        tensors |= model.uncertainty.tensors()
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
    text = metadata.get("schema_version", "0")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{path}: model schema_version {text!r} is not a positive integer")
    version = int(text)
    if "config" not in metadata:
        raise ValueError(f"{path}: the model file has no config (damaged file)")
    for key in ("config", "extra"):
        try:
            json.loads(metadata.get(key, "{}"))
        except ValueError:
            raise ValueError(f"{path}: the model file's {key} is not valid JSON") from None
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
    header = {k: v for k, v in _read_header(path).items() if not k.startswith(ENGINE_PREFIX)}
    weights, uq_names = split_state({k: k for k in header})
    try:
        # values are the file's tensor names: select_head maps model keys to them
        config, names = select_head(Path(path), metadata, weights, head)
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        if errors is None:
            raise
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
        raise ValueError(f"{path}: invalid model config in the file: {problems}") from None
    stored_dtype = _check_tensors(path, config, {k: header[v] for k, v in names.items()})
    with safe_open(str(path), framework="pt") as f:
        state = {key: f.get_tensor(name) for key, name in names.items()}
        uq_tensors = {name: f.get_tensor(name) for name in uq_names}
    for key, value in state.items():
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{path}: tensor {names[key]!r} has non-finite values (NaN or inf)")
    model = EnergyModel(config)
    model.load_state_dict(state)
    model = model.to(dtype or stored_dtype)
    try:
        model.uncertainty = Uncertainty.restore(metadata.get("uncertainty"), uq_tensors)
    except (KeyError, TypeError, IndexError, RuntimeError) as exc:
        raise ValueError(
            f"{path}: damaged uncertainty data ({type(exc).__name__}: {exc})"
        ) from None
    return model


FLOAT_DTYPES = {"F32": torch.float32, "F64": torch.float64}


def _read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name → (safetensors dtype, shape), from the header only (no data read)."""
    with safe_open(str(path), framework="pt") as f:
        return {
            k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()
        }


def _check_tensors(path: Path, config: ModelConfig, header: dict) -> torch.dtype:
    """Names, shapes and dtypes of the model's tensors (``header``: model key → (dtype,
    shape)) against the config, compared with a model built on the meta device, so a tampered
    config cannot make us allocate. Returns the stored dtype."""
    depth = max(config.num_layers, len(config.radial_hidden))
    if depth > max(len(header), 1):
        raise ValueError(
            f"{path}: the config asks for {depth} layers but the file holds {len(header)} "
            "tensors: config and weights do not belong together"
        )
    try:
        # Constants (coupling coefficients, ...) are computed with real tensors and cached
        # per degree: a one-channel twin on the CPU computes them, the meta model reuses them.
        EnergyModel(config.model_copy(update={"channels": 1, "radial_hidden": [1]}))
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in EnergyModel(config).state_dict().items()}
    except (RuntimeError, OverflowError, MemoryError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ValueError(
            f"{path}: the stored config describes no buildable model ({reason})"
        ) from None
    missing, unexpected = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the stored config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    for name, (_, shape) in header.items():
        if shape != expected[name]:
            raise ValueError(
                f"{path}: tensor {name!r} has shape {list(shape)}, the config needs "
                f"{list(expected[name])}"
            )
    kinds = [kind for kind, _ in header.values()]
    for name, (kind, _) in header.items():
        if kind not in FLOAT_DTYPES or kind != kinds[0]:
            raise ValueError(
                f"{path}: tensor {name!r} has dtype {kind} (the file holds {sorted(set(kinds))});"
                " a model file holds float32 or float64 tensors, all of one dtype"
            )
    return FLOAT_DTYPES[kinds[0]] if kinds else torch.float64
