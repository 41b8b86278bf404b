"""Fine-tuning: the ``finetune:`` section of a training config.

    finetune:
      from: base.eqp            # a model file or a shipped model name ("organic-gfn2")
      head: pbe                 # name of the new head (default "default")
      freeze: [embedding, interactions]   # any of embedding / interactions / layers.<t> /
                                          # readout / baseline (E0 and shift refinements)
      lr_scale: {embedding: 0.1, interactions: 0.3, readout: 1.0}   # × optim.lr per group
      e0: refit                 # refit | keep: per-element E0 for the new level of theory
      replay:                   # multi-head fine-tuning: keep the old domain
        data: old.xyz           # default: the shipped model's replay frames
        count: 500              # frames of it (random subset)
        weight: 1.0             # loss weight of replay frames

The architecture and normalisation (r_max, channels, ..., scale, avg_num_neighbors) are the
base model's; ``model:`` options that contradict it are an error. Elements in the data that
the base lacks are added (:mod:`equipot.transfer.elements`). With ``e0: refit`` the E0 are
re-fitted by least squares of ``E_ref − E_interaction(base)`` over the training frames, as a
minimum-norm correction to the base E0 (compositions the data do not vary keep the base's
proportions). With ``replay`` the model gets a second head — the base model's own head,
named as in the base file — trained on the replay frames while the new head trains on the
target data; both share (and both shape) the backbone. The saved model holds both heads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from equipot.data.readers import DataSource

FREEZE_GROUPS = ("embedding", "interactions", "readout", "baseline")
_LAYER = re.compile(r"^layers\.(\d+)$")


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: DataSource | None = None  # default: the shipped base model's replay frames
    count: int | None = Field(None, ge=1)
    weight: float = Field(1.0, ge=0.0)
    seed: int = 0


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", description="model file or shipped model name")
    head: str = "default"
    freeze: list[str] = Field(default_factory=list)
    lr_scale: dict[str, float] = Field(default_factory=dict)
    e0: Literal["refit", "keep"] = "refit"
    replay: ReplayConfig | None = None

    @field_validator("freeze")
    @classmethod
    def _freeze_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if n not in FREEZE_GROUPS and not _LAYER.match(n)]
        if bad:
            raise ValueError(
                f"cannot freeze {bad}: choose from {', '.join(FREEZE_GROUPS)} or layers.<t>"
            )
        return names

    @field_validator("lr_scale")
    @classmethod
    def _scale_names(cls, scales: dict[str, float]) -> dict[str, float]:
        bad = [n for n in scales if n not in FREEZE_GROUPS]
        if bad:
            raise ValueError(f"unknown parameter group(s) {bad}: use {', '.join(FREEZE_GROUPS)}")
        negative = [n for n, v in scales.items() if v < 0]
        if negative:
            raise ValueError(f"lr_scale must be ≥ 0 ({negative})")
        return scales


@dataclass
class FinetunePlan:
    """What the trainer needs to build the fine-tuning model (see build_training_model)."""

    base_path: Path
    base_head: str  # the base file's default head: initialises the new one, is replayed
    replay_config: object | None = None  # ModelConfig of the replayed head, if any
    added_elements: dict | None = None  # new element → template


# ---------------------------------------------------------------------------- parameters
def parameter_group(name: str) -> str:
    """embedding / interactions / readout / baseline for a training-model parameter name."""
    from equipot.transfer.heads import is_readout

    if name.endswith(("e0_delta", "shift_delta")):
        return "baseline"
    if is_readout(name):
        return "readout"
    if name.split(".")[-1] == "embedding":
        return "embedding"
    return "interactions"


def _frozen(name: str, freeze: list[str]) -> bool:
    group = parameter_group(name)
    for item in freeze:
        m = _LAYER.match(item)
        if m and group == "interactions" and f"net.layers.{m.group(1)}." in name:
            return True
        if item == group:
            return True
    return False


def freeze_parameters(model: torch.nn.Module, freeze: list[str]) -> list[str]:
    """Stop gradients of the named groups; returns the frozen parameter names."""
    layers = {int(m.group(1)) for item in freeze if (m := _LAYER.match(item))}
    num_layers = model.config.num_layers
    if layers and max(layers) >= num_layers:
        raise ValueError(f"freeze: the model has layers 0..{num_layers - 1}, not {max(layers)}")
    names = []
    for name, p in model.named_parameters():
        if _frozen(name, freeze):
            p.requires_grad_(False)
            names.append(name)
    return names


def optimizer_groups(model: torch.nn.Module, lr_scale: dict[str, float]) -> list[dict]:
    """Trainable parameters in groups with their ``lr_scale`` (see train/optim.py)."""
    groups: dict[str, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(parameter_group(name), []).append(p)
    return [
        {"params": params, "lr_scale": float(lr_scale.get(group, 1.0)), "name": group}
        for group, params in groups.items()
    ]


# ---------------------------------------------------------------------------- preparation
def _base_path(config) -> Path:
    from equipot.pretrained import resolve_model_path

    return resolve_model_path(config.finetune.from_)


def resolve_config(config):
    """``config`` with the base model's architecture in ``model:`` (checked for conflicts)."""
    from equipot.model.config import ModelConfig
    from equipot.model.io import read_model_metadata
    from equipot.train.config import RepulsionOptions

    path = _base_path(config)
    base = ModelConfig.model_validate_json(read_model_metadata(path)["config"])
    options = config.model
    architecture = options.architecture()
    updates = {}
    for key in architecture:
        if not hasattr(base, key) or key in ("radial_floor", "feature_ceiling"):  # from data
            continue
        value = getattr(base, key)
        mine = architecture[key] if key == "repulsion" else getattr(options, key)
        if key in options.model_fields_set and mine != value:
            raise ValueError(
                f"model.{key} = {mine!r} contradicts the base model {path} "
                f"({key} = {value!r}); fine-tuning keeps the base architecture"
            )
        updates[key] = RepulsionOptions.of(value) if key == "repulsion" else value
    model = options.model_copy(update=updates)
    return config.model_copy(update={"model": model})


def attach(config, prepared, *, resumed: bool, verbose: bool = True):
    """Turn a freshly prepared run into a fine-tuning run: the model config (elements, E0,
    the base's normalisation), the plan for the trainer and, with replay, the mixed data."""
    from equipot.model.io import load_model, read_model_metadata
    from equipot.transfer.elements import extend_model, template_element
    from equipot.transfer.heads import DEFAULT_HEAD
    from equipot.transfer.replay import ReplayPart

    ft: FinetuneConfig = config.finetune
    path = _base_path(config)
    base_head = read_model_metadata(path).get("head_name", DEFAULT_HEAD)
    base = load_model(path, dtype=torch.float64)
    known = list(base.config.elements)
    elements = known + [e for e in prepared.model_config.elements if e not in known]
    added = {e: template_element(e, known) for e in elements if e not in known}
    if resumed:
        target_config = prepared.model_config
    else:
        train_set = prepared.train.open(config.data.in_memory)
        zero = extend_model(base, elements, e0={})
        initial = {e: base.config.e0.get(added.get(e, e), 0.0) for e in zero.config.elements}
        fixed = set(known) if ft.e0 == "keep" else set()
        e0 = refit_e0(zero, train_set, initial, fixed=fixed)
        floor = merged_floor(zero.config.radial_floor, prepared.model_config.radial_floor)
        # the base's feature ceiling was measured with its weights: measured again after
        update = {"e0": e0, "radial_floor": floor, "feature_ceiling": None}
        target_config = zero.config.model_copy(update=update)
        prepared.model_config = target_config
        prepared.statistics = {
            "e0": e0,
            "e0_source": {e: f"fine-tuning ({ft.e0})" for e in e0},
            "scale": target_config.scale,
            "shift": target_config.shift,
            "avg_num_neighbors": target_config.avg_num_neighbors,
            "base_model": str(path),
            "added_elements": added,
        }
        if verbose and added:
            print(f"fine-tuning: added elements {added} (new element ← template)")
    plan = FinetunePlan(path, base_head, added_elements=added)
    if ft.replay is not None:
        if ft.head == base_head:
            raise ValueError(
                f"finetune.head {ft.head!r} is the base model's head name: the replayed head "
                "keeps it, so name the new head differently"
            )
        base_e0 = {e: base.config.e0.get(added.get(e, e), 0.0) for e in elements}
        plan.replay_config = extend_model(base, elements, e0=base_e0).config
        prepared.train = ReplayPart.create(config, prepared, plan, verbose)
    prepared.finetune = plan
    return prepared


def merged_floor(
    base: dict[str, float] | None, target: dict[str, float] | None
) -> dict[str, float] | None:
    """The fine-tuned model's radial floor: per pair the shorter of the base model's and the
    new data's (the network must read every distance it is now trained on); ``None`` where
    the new run asks for none (``model.radial_floor: none``)."""
    if target is None:
        return None
    merged = dict(base or {})
    for key, value in target.items():
        a, b = key.split("-", 1)
        known = merged.get(key, merged.get(f"{b}-{a}"))
        merged[key] = value if known is None else min(known, value)
        if f"{b}-{a}" in merged and b != a:
            merged[f"{b}-{a}"] = merged[key]
    return merged


def refit_e0(
    model, dataset, initial: dict[str, float], *, fixed: set[str], batch_size: int = 32
) -> dict[str, float]:
    """Per-element E0 for the training data's level of theory (see module docstring).

    ``model`` has E0 = 0, so its energies are interaction energies; ``initial`` holds the
    starting E0 of every element, those in ``fixed`` are kept, the others get the
    minimum-norm least-squares correction.
    """
    from equipot.calculator import frozen_copy
    from equipot.physics.derivatives import predict

    net = frozen_copy(model, torch.float64, "cpu")
    elements = list(model.config.elements)
    column = {z: k for k, z in enumerate(model.config.atomic_numbers)}
    residual, counts = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = dataset.batch(np.arange(start, min(start + batch_size, len(dataset))))
            energy = predict(net, batch.graph, forces=False).energy
            residual.append((batch.energy - energy).numpy())
            c = np.zeros((batch.graph.num_systems, len(elements)))
            cols = [column[int(z)] for z in batch.graph.atomic_numbers]
            np.add.at(c, (batch.graph.batch.numpy(), cols), 1.0)
            counts.append(c)
    residual, counts = np.concatenate(residual), np.concatenate(counts)
    e0 = np.array([initial[e] for e in elements])
    free = np.array([e not in fixed for e in elements])
    if free.any():
        delta, *_ = np.linalg.lstsq(counts[:, free], residual - counts @ e0, rcond=None)
        e0[free] += delta
    return {e: float(v) for e, v in zip(elements, e0, strict=True)}


# ---------------------------------------------------------------------------- the model
def build_training_model(config, prepared) -> torch.nn.Module:
    """The network the trainer optimises: a plain :class:`TrainingModel`, or for fine-tuning
    one initialised from the base weights (with frozen groups and, with replay, two heads)."""
    from equipot.model.builder import resolve_dtype
    from equipot.model.io import load_model
    from equipot.train.model import TrainingModel, learnable_e0
    from equipot.transfer.elements import extend_state

    dtype = resolve_dtype(config.dtype)
    o = config.optim

    def training_model(model_config):
        return TrainingModel(
            model_config,
            seed=config.seed,
            dtype=dtype,
            learn_e0=learnable_e0(
                o.learn_e0, prepared.statistics.get("e0_source", {}), model_config.elements
            ),
            learn_shift=o.learn_shift,
        )

    main = training_model(prepared.model_config)
    plan: FinetunePlan | None = getattr(prepared, "finetune", None)
    if plan is None:
        return main
    base = load_model(plan.base_path)
    state, _ = extend_state(
        base.state_dict(), list(base.config.elements), list(prepared.model_config.elements)
    )
    main.net.load_state_dict(state)
    main.head_name = config.finetune.head
    model = main
    if plan.replay_config is not None:
        from equipot.transfer.replay import MultiHeadTrainingModel

        old = training_model(plan.replay_config)
        old.net.load_state_dict(state)
        model = MultiHeadTrainingModel(main, {plan.base_head: old}, config.finetune.head)
    freeze_parameters(model, config.finetune.freeze)
    return model
