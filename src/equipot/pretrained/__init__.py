"""Pre-trained models shipped inside the package (no download; works offline).

    model = equipot.pretrained()                 # the default model (an EnergyModel)
    model = equipot.pretrained("organic-gfn2")   # by name
    path = equipot.pretrained_path("organic-gfn2")
    card = equipot.pretrained_card("organic-gfn2")  # data recipe, level of theory, errors

A name is accepted wherever a model file is in ``finetune.from`` (training configs). Each
model ships with its card (``<name>.json``), its validation frames (``<name>.valid.xyz``,
on which the card's errors were measured) and a replay subset of its training data
(``<name>.replay.xyz``, used by multi-head fine-tuning to keep the old domain).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DEFAULT = "organic-gfn2"
HERE = Path(__file__).parent


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in HERE.glob("*.eqp"))


def pretrained_path(name: str | None = None, kind: str = "eqp") -> Path:
    """Path of a shipped model (``kind`` "eqp"), its card ("json"), validation ("valid.xyz")
    or replay ("replay.xyz") frames."""
    name = name or DEFAULT
    path = HERE / f"{name}.{kind}"
    if not (HERE / f"{name}.eqp").is_file():
        shipped = ", ".join(available()) or "none: this installation has no packaged model"
        raise ValueError(f"no shipped pre-trained model named {name!r} (available: {shipped})")
    if not path.is_file():
        raise FileNotFoundError(f"the shipped model {name!r} has no {kind} file ({path})")
    return path


def pretrained_card(name: str | None = None) -> dict:
    """The model card: data recipe, level of theory, intended use, recorded errors."""
    return json.loads(pretrained_path(name, "json").read_text())


def pretrained(name: str | None = None, *, dtype: torch.dtype | None = None, head=None):
    """Load a shipped model (an :class:`~equipot.model.energy_model.EnergyModel`)."""
    from equipot.model.io import load_model

    return load_model(pretrained_path(name), dtype=dtype, head=head)


def resolve_model_path(spec: str | Path) -> Path:
    """A model file path, or the path of the shipped model of that name."""
    path = Path(spec)
    if path.is_file():
        return path
    if str(spec) in available():
        return pretrained_path(str(spec))
    shipped = ", ".join(available()) or "none"
    raise FileNotFoundError(f"{spec} is neither a model file nor a shipped model ({shipped})")
