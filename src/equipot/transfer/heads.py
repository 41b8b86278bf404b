"""Multi-head models: one shared backbone, one readout (and energy baseline) per head.

A head is a level of theory or a data domain ("gfn2-xtb", "pbe-d3", ...). Heads share the
element embedding and every interaction layer; each has its own per-layer readouts
``y^(t)`` and its own :class:`~equipot.model.config.ModelConfig` statistics (E0, scale, shift).
Loading a head gives an ordinary single-head :class:`~equipot.model.energy_model.EnergyModel`
(fast inference path, calculator, MD, ...), so a head is chosen at load time::

    model = equipot.load_model("ft.eqp", head="gfn2-xtb")
    calc = equipot.EquipotCalculator("ft.eqp", head="gfn2-xtb")

File layout (safetensors, data only): the default head is stored as a complete model; every
other head adds its readout tensors under ``readout_heads.<name>.<parameter>`` and its config
to the ``heads`` metadata entry (JSON: name → ModelConfig JSON). ``head_name`` names the
default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from equipot.graph import AtomicGraph
from equipot.model.config import ModelConfig
from equipot.model.energy_model import EnergyModel

DEFAULT_HEAD = "default"
HEAD_PREFIX = "readout_heads."  # not "heads.": the tensor-output module (model.heads)


def is_readout(name: str) -> bool:
    """Parameter names of the per-head readouts (``layers.<t>.node.readout.<k>``)."""
    return ".node.readout." in name


def head_names(metadata: dict) -> list[str]:
    """Heads of a model file's metadata, the default first."""
    others = list(json.loads(metadata.get("heads", "{}")))
    return [metadata.get("head_name", DEFAULT_HEAD), *others]


def head_metadata(default: str, others: dict[str, EnergyModel]) -> tuple[dict, dict]:
    """Extra metadata and tensors that store ``others`` beside the default head."""
    configs = {name: m.config.model_dump_json() for name, m in others.items()}
    tensors = {
        f"{HEAD_PREFIX}{name}.{key}": value.detach().contiguous().cpu()
        for name, m in others.items()
        for key, value in m.state_dict().items()
        if is_readout(key)
    }
    return {"head_name": default, "heads": json.dumps(configs)}, tensors


def stored_heads(path: str | Path) -> tuple[str | None, dict[str, EnergyModel]]:
    """The default head's name (None for a plain single-head file) and every other head of a
    model file, loaded: what :func:`~equipot.model.io.save_model` needs to re-save it whole."""
    from equipot.model.io import load_model, read_model_metadata

    metadata = read_model_metadata(path)
    if "head_name" not in metadata and "heads" not in metadata:
        return None, {}
    names = head_names(metadata)
    return names[0], {name: load_model(path, head=name) for name in names[1:]}


def select_head(
    path: Path, metadata: dict, state: dict[str, Tensor], head: str | None
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """The config and plain state dict of ``head`` (default: the file's default head)."""
    default = metadata.get("head_name", DEFAULT_HEAD)
    configs = json.loads(metadata.get("heads", "{}"))
    main = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    if head is None or head == default:
        return ModelConfig.model_validate_json(metadata["config"]), main
    if head not in configs:
        raise ValueError(f"{path} has no head {head!r} (heads: {', '.join(head_names(metadata))})")
    prefix = f"{HEAD_PREFIX}{head}."
    for key, value in state.items():
        if key.startswith(prefix):
            main[key[len(prefix) :]] = value
    return ModelConfig.model_validate_json(configs[head]), main


@dataclass(frozen=True, eq=False)
class HeadGraph(AtomicGraph):
    """An :class:`AtomicGraph` whose systems each name a head (index into the model's heads).

    ``head`` is not a scoped field: generic graph operations (``to``, ``unbatch``) treat it as
    metadata of this batch; :func:`select_systems` carries it along.
    """

    head: Tensor | None = field(default=None, metadata={"scope": None})


def select_systems(graph: AtomicGraph, systems: Tensor) -> tuple[AtomicGraph, Tensor]:
    """The sub-batch of ``systems`` (sorted system indices) and the atom indices it keeps.

    Positions are gathered with an index (not copied), so derivatives flow back to the
    full batch's positions and strain.
    """
    keep_system = torch.zeros(graph.num_systems, dtype=torch.bool, device=graph.device)
    keep_system[systems] = True
    atoms = torch.nonzero(keep_system[graph.batch]).squeeze(1)
    new_index = torch.full((graph.num_atoms,), -1, dtype=torch.int64, device=graph.device)
    new_index[atoms] = torch.arange(len(atoms), device=graph.device)
    edges = torch.nonzero(keep_system[graph.batch[graph.edge_index[0]]]).squeeze(1)
    system_index = torch.full((graph.num_systems,), -1, dtype=torch.int64, device=graph.device)
    system_index[systems] = torch.arange(len(systems), device=graph.device)
    sub = AtomicGraph(
        positions=graph.positions.index_select(0, atoms),
        atomic_numbers=graph.atomic_numbers[atoms],
        batch=system_index[graph.batch[atoms]],
        edge_index=new_index[graph.edge_index[:, edges]],
        edge_shift=graph.edge_shift[edges],
        cell=graph.cell.index_select(0, systems),
        pbc=graph.pbc[systems],
        n_atoms=graph.n_atoms[systems],
        n_edges=graph.n_edges[systems],
        cutoff=graph.cutoff,
    )
    return sub, atoms
