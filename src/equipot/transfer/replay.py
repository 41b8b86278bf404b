"""Multi-head training with replay: the target data on the new head, frames of the old
domain on the old head, one shared backbone (see :mod:`equipot.train.finetune`).

:class:`MixedDataset` serves batches mixing both data sets as a :class:`HeadGraph` (which
head each system belongs to); :class:`MultiHeadTrainingModel` evaluates each system with its
head. Every head is a full :class:`~equipot.train.model.TrainingModel` whose backbone modules
*are* the main head's (shared objects, so one optimiser step moves all heads' backbone), and
whose readouts and baseline refinements are its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers as Z_OF
from torch import nn

from equipot.data.dataset import Batch, GraphDataset
from equipot.graph import AtomicGraph, batch_graphs
from equipot.model.energy_model import ModelOutput
from equipot.transfer.heads import HeadGraph, select_systems

BACKBONE = ("linear_up", "edge")  # per layer; node.product / linear_out / self_connection too
NODE_BACKBONE = ("product", "linear_out", "self_connection")


class MultiHeadTrainingModel(nn.Module):
    def __init__(self, main: nn.Module, others: dict[str, nn.Module], main_name: str):
        super().__init__()
        self.main = main
        self.others = nn.ModuleDict(others)
        self.head_names = [main_name, *others]
        for other in others.values():
            _share_backbone(main.net, other.net)

    @property
    def config(self):
        return self.main.config

    @property
    def dtype(self) -> torch.dtype:
        return self.main.dtype

    def heads(self) -> list[nn.Module]:
        return [self.main, *self.others.values()]

    def set_execution(self, **kwargs) -> MultiHeadTrainingModel:
        for head in self.heads():
            head.set_execution(**kwargs)
        return self

    def forward(self, graph: AtomicGraph) -> ModelOutput:
        head = getattr(graph, "head", None)
        if head is None:
            return self.main(graph)
        heads = self.heads()
        present = torch.unique(head).tolist()
        if len(present) == 1:
            return heads[present[0]](graph)
        atomic = graph.positions.new_zeros(graph.num_atoms)
        energy = graph.positions.new_zeros(graph.num_systems)
        for h in present:
            systems = torch.nonzero(head == h).squeeze(1)
            sub, atoms = select_systems(graph, systems)
            out = heads[h](sub)
            atomic = atomic.index_put((atoms,), out.atomic_energies)
            energy = energy.index_put((systems,), out.energy)
        return ModelOutput(energy=energy, atomic_energies=atomic)

    def export(self, dtype: torch.dtype | None = None):
        return self.main.export(dtype)

    def save(self, path: Path, extra: dict | None = None) -> Path:
        others = {name: m.export() for name, m in self.others.items()}
        return self.main.export().save(
            path, extra=extra, heads=others, head_name=self.head_names[0]
        )


def _share_backbone(main, other) -> None:
    other.embedding = main.embedding
    for mine, theirs in zip(main.layers, other.layers, strict=True):
        for name in BACKBONE:
            setattr(theirs, name, getattr(mine, name))
        for name in NODE_BACKBONE:
            setattr(theirs.node, name, getattr(mine.node, name))


# ---------------------------------------------------------------------------- data
def _reference(e0: dict[str, float]) -> np.ndarray:
    table = np.zeros(119)
    for element, value in e0.items():
        table[Z_OF[element]] = value
    return table


class MixedDataset:
    """Target frames (head 0) followed by replay frames (head 1), batched together."""

    def __init__(self, target: GraphDataset, replay: GraphDataset, replay_e0: dict, weight: float):
        self.target, self.replay, self.weight = target, replay, weight
        self.replay_reference = _reference(replay_e0)
        self.name = f"{target.name} + replay {replay.name}"

    def __len__(self) -> int:
        return len(self.target) + len(self.replay)

    def num_atoms(self) -> np.ndarray:
        return np.concatenate([self.target.num_atoms(), self.replay.num_atoms()])

    def frame_arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        a, b = self.target.frame_arrays(names), self.replay.frame_arrays(names)
        return {k: np.concatenate([a[k], b[k]]) for k in names}

    def set_config_type_weights(self, weights: dict[str, float]) -> None:
        self.target.set_config_type_weights(weights)
        self.replay.set_config_type_weights(weights)

    def batch(self, positions, dtype=torch.float64, energy_reference=None) -> Batch:
        positions = np.asarray(positions, np.int64)
        n = len(self.target)
        parts = []
        mine, theirs = positions[positions < n], positions[positions >= n] - n
        if len(mine):
            parts.append((0, self.target.batch(mine, dtype, energy_reference)))
        if len(theirs):
            b = self.replay.batch(theirs, dtype, self.replay_reference)
            b.weight = b.weight * self.weight
            parts.append((1, b))
        graph = batch_graphs([b.graph for _, b in parts])
        head = torch.cat([torch.full((b.graph.num_systems,), h) for h, b in parts])
        fields = {f: getattr(graph, f) for f in graph.__dataclass_fields__}

        def cat(name):
            return torch.cat([getattr(b, name) for _, b in parts])

        return Batch(
            graph=HeadGraph(**fields, head=head),
            energy=cat("energy"),
            forces=cat("forces"),
            stress=cat("stress"),
            has_forces=cat("has_forces"),
            has_stress=cat("has_stress"),
            weight=cat("weight"),
            frames=np.concatenate([b.frames + (h * n) for h, b in parts]),
        )


@dataclass
class ReplayPart:
    """A data part (see train/prepare.py) that opens as a :class:`MixedDataset`."""

    target: object  # DataPart
    replay: object  # DataPart
    replay_e0: dict
    weight: float
    name: str = ""

    @classmethod
    def create(cls, config, prepared, plan, verbose: bool) -> ReplayPart:
        from equipot.pretrained import available, pretrained_path
        from equipot.train.prepare import _part

        replay = config.finetune.replay
        source = replay.data
        if source is None:
            name = config.finetune.from_
            if name not in available():
                raise ValueError(
                    "finetune.replay.data is required unless finetune.from names a shipped "
                    f"model (which brings its replay frames); got from: {name}"
                )
            from equipot.data.readers import DataSource

            source = DataSource(path=pretrained_path(name, "replay.xyz"))
        part = _part(source, config, verbose)
        if replay.count is not None and replay.count < len(part.indices):
            rng = np.random.default_rng(replay.seed)
            part.indices = np.sort(rng.permutation(part.indices)[: replay.count])
        return cls(prepared.train, part, dict(plan.replay_config.e0), replay.weight, part.name)

    @property
    def indices(self) -> np.ndarray:
        return self.target.indices

    def open(self, in_memory: bool | None = None) -> MixedDataset:
        return MixedDataset(
            self.target.open(in_memory), self.replay.open(in_memory), self.replay_e0, self.weight
        )
