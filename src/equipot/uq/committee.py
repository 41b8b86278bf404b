"""Committees: K independently trained models evaluated on one graph.

    Ē = (1/K) Σ_k E^(k),    σ_E² = s_E · 1/(K−1) Σ_k (E^(k) − Ē)²
    F̄_i likewise,          σ_F,i² = s_F · Σ_a 1/(K−1) Σ_k (F_ia^(k) − F̄_ia)²

(sample standard deviations; ``forces_std`` is the per-atom norm of the component stds; s_E,
s_F are calibration factors, 1 until ``equipot calibrate`` sets them). The members share the
input graph (neighbour list, validation); frozen members on the CPU also share the graph's
preparation, the radial floor and the ZBL term, and their engines run in one call
(:func:`equipot.model.engine_pass.committee_pass`).

A committee file (``.eqp`` too) is one safetensors container: each member's weights under
``member<k>/``, their configs in the header, and the committee's own uncertainty data;
loading it, like a model file, executes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from equipot.graph import AtomicGraph
from equipot.model.config import MODEL_SCHEMA_VERSION, ModelConfig
from equipot.model.energy_model import EnergyModel
from equipot.model.engine_pass import committee_pass
from equipot.physics.derivatives import Prediction, member_predictions, predict
from equipot.uq.store import Uncertainty, split_state
from equipot.version import __version__

COMMITTEE_TAG = "equipot-committee"


@dataclass
class CommitteePrediction:
    mean: Prediction  # energies, forces, stress: member averages
    energy_std: Tensor  # (S,) eV
    forces_std: Tensor | None  # (N,) eV/Å
    members: list[Prediction]

    def stack(self, name: str) -> Tensor:
        """(K, ...) the members' values of a Prediction field."""
        return torch.stack([getattr(p, name).detach() for p in self.members])


def check_members(members: list[EnergyModel]) -> None:
    if len(members) < 2:
        raise ValueError(f"a committee needs at least 2 members, got {len(members)}")
    first = members[0].config
    for k, m in enumerate(members[1:], 1):
        if m.config.elements != first.elements or m.config.r_max != first.r_max:
            raise ValueError(
                f"committee member {k} has elements {m.config.elements} / r_max "
                f"{m.config.r_max} Å, member 0 {first.elements} / {first.r_max} Å: members "
                "must share elements and cutoff"
            )


def committee_predict(
    members: list[torch.nn.Module],
    graph: AtomicGraph,
    *,
    forces: bool = True,
    stress: bool = False,
    features: bool = False,
    energy_scale: float = 1.0,
    force_scale: float = 1.0,
) -> CommitteePrediction:
    """Every member on the same ``graph``; means and (calibrated) standard deviations."""
    preds = None
    if forces or stress:  # frozen members on the CPU: one shared pass (model/engine_pass.py)
        shared = committee_pass(members, graph, gradient=True, features=features)
        if shared is not None:
            preds = member_predictions(graph, *shared, forces=forces, stress=stress)
    if preds is None:
        preds = [
            predict(m, graph, forces=forces, stress=stress, features=features) for m in members
        ]
    energies = torch.stack([p.energy.detach() for p in preds])
    mean = Prediction(
        energy=energies.mean(0),
        atomic_energies=torch.stack([p.atomic_energies.detach() for p in preds]).mean(0),
    )
    forces_std = None
    if forces:
        f = torch.stack([p.forces.detach() for p in preds])
        mean.forces = f.mean(0)
        forces_std = (force_scale * f.var(0, correction=1).sum(1)).sqrt()
    if stress:
        mean.stress = torch.stack([p.stress.detach() for p in preds]).mean(0)
        mean.virial = torch.stack([p.virial.detach() for p in preds]).mean(0)
    energy_std = (energy_scale * energies.var(0, correction=1)).sqrt()
    return CommitteePrediction(mean, energy_std, forces_std, preds)


# ---------------------------------------------------------------------- files
def save_committee(
    members: list[EnergyModel],
    path: str | Path,
    uncertainty: Uncertainty | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the members (and the committee's uncertainty data) to one file, atomically."""
    check_members(members)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    member_uq = []
    for k, m in enumerate(members):
        for name, value in m.state_dict().items():
            tensors[f"member{k}/{name}"] = value.detach().contiguous().cpu()
        if m.uncertainty is not None:
            for name, value in m.uncertainty.tensors().items():
                tensors[f"member{k}/{name}"] = value
        member_uq.append(None if m.uncertainty is None else m.uncertainty.metadata())
    if uncertainty is not None:
        tensors |= uncertainty.tensors()
    metadata = {
        "format": COMMITTEE_TAG,
        "schema_version": str(MODEL_SCHEMA_VERSION),
        "equipot_version": __version__,
        "torch_version": torch.__version__,
        "configs": json.dumps([m.config.model_dump(mode="json") for m in members]),
        "member_uncertainty": json.dumps(member_uq),
        "uncertainty": "" if uncertainty is None else uncertainty.metadata(),
        "extra": json.dumps(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def is_committee_file(path: str | Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == COMMITTEE_TAG
    except Exception:
        return False


def load_committee(
    path: str | Path, *, dtype: torch.dtype | None = None
) -> tuple[list[EnergyModel], Uncertainty | None]:
    """Members and the committee's uncertainty data from a committee file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"committee file not found: {path}")
    if not is_committee_file(path):
        raise ValueError(f"{path} is not an equipot committee file (format tag missing)")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    if int(metadata.get("schema_version", "0")) > MODEL_SCHEMA_VERSION:
        raise ValueError(f"{path} was written by a newer equipot; upgrade to read it")
    state, committee_uq = split_state(load_file(str(path)))
    configs = json.loads(metadata["configs"])
    member_uq = json.loads(metadata.get("member_uncertainty", "[]")) or [None] * len(configs)
    members = []
    for k, (config, uq_text) in enumerate(zip(configs, member_uq, strict=True)):
        prefix = f"member{k}/"
        mine = {n[len(prefix) :]: v for n, v in state.items() if n.startswith(prefix)}
        weights, uq_tensors = split_state(mine)
        model = EnergyModel(ModelConfig.model_validate(config))
        expected = set(model.state_dict())
        if set(weights) != expected:
            raise ValueError(f"{path}: member {k}'s weights do not match its stored config")
        stored = next(iter(weights.values())).dtype
        model.load_state_dict(weights)
        model = model.to(dtype or stored)
        model.uncertainty = Uncertainty.restore(uq_text, uq_tensors)
        members.append(model)
    return members, Uncertainty.restore(metadata.get("uncertainty"), committee_uq)


def load_models(path: str | Path, *, dtype: torch.dtype | None = None):
    """(members, committee uncertainty) from a committee file, or ([model], None) from a
    model file."""
    if is_committee_file(path):
        return load_committee(path, dtype=dtype)
    from equipot.model.io import load_model

    return [load_model(path, dtype=dtype)], None


def resolve_models(spec) -> tuple[list[EnergyModel], Uncertainty | None]:
    """Members and committee uncertainty from a model, a path (model or committee file), or
    a list of models / model-file paths."""
    if isinstance(spec, EnergyModel):
        return [spec], None
    if isinstance(spec, (str, Path)):
        return load_models(spec)
    items = list(spec)
    if not items:
        raise ValueError("no models given")
    members = []
    for item in items:
        if isinstance(item, EnergyModel):
            members.append(item)
            continue
        loaded, _ = load_models(item)
        if len(loaded) != 1:
            raise ValueError(f"{item} is a committee file: give it alone, not in a list")
        members.extend(loaded)
    if len(members) > 1:
        check_members(members)
    return members, None
