"""The network being trained, and model files written from it.

Training fits ``E − Σ_i E0[z_i]`` (labels referenced in float64), so the network's own E0 is
zero; its fixed terms (ZBL repulsion) are part of the network and trained through. With
``learn_e0`` a trainable per-element offset δ is added for the elements whose E0 is a
least-squares fit ("auto"; E0 given by the user or from isolated atoms is a physical reference
and stays fixed, so an isolated atom keeps its true energy), and with ``learn_shift`` (off by
default: unbounded, see ModelConfig) a coordination coefficient s (ρ_i: smooth coordination):

    E_train = Σ_i (E_net,i + δ[z_i] + s·ρ_i),     saved model: E0' = E0 + δ,  shift' = shift + s

Adam moves δ and s directly: a uniform energy offset (invisible to forces) is otherwise a slow
mode that the network could only reach through its environment-dependent features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from equipot.graph import AtomicGraph
from equipot.model.builder import model_from_config
from equipot.model.config import ModelConfig
from equipot.model.energy_model import EnergyModel, ModelOutput
from equipot.nn.radial import PolynomialEnvelope


class TrainingModel(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        *,
        seed: int,
        dtype: torch.dtype,
        learn_e0: bool | Sequence[str],
        learn_shift: bool = False,
    ):
        super().__init__()
        self.full_config = config
        self.net = model_from_config(config.model_copy(update={"e0": {}}), seed=seed, dtype=dtype)
        self.net.set_execution(kernels=False, memory_efficient=False)
        # δ exists unless learn_e0 is False; the mask picks the refined elements and is saved
        # in checkpoints, so a resumed run refines the same ones.
        self.e0_delta = None
        if learn_e0 is not False:
            learnable = config.elements if learn_e0 is True else list(learn_e0)
            self.e0_delta = nn.Parameter(torch.zeros(len(config.elements), dtype=dtype))
            mask = torch.tensor([e in learnable for e in config.elements], dtype=dtype)
            self.register_buffer("e0_mask", mask)
        self.shift_delta = nn.Parameter(torch.zeros((), dtype=dtype)) if learn_shift else None
        self.envelope = PolynomialEnvelope(config.r_max, config.envelope_exponent)

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

    def local_energies(self, graph: AtomicGraph):
        return self.net.local_energies(graph)

    @property
    def heads(self):
        return self.net.heads

    def set_execution(self, **kwargs) -> TrainingModel:
        self.net.set_execution(**kwargs)
        return self

    def coordination(self, graph: AtomicGraph) -> torch.Tensor:
        """ρ_i = Σ_j u(r_ij) / avg_num_neighbors, as in the model (see ModelConfig)."""
        lengths = torch.linalg.vector_norm(graph.edge_vectors(), dim=1)
        u = self.envelope(lengths) / self.config.avg_num_neighbors
        return torch.zeros_like(graph.positions[:, 0]).index_add(0, graph.edge_index[0], u)

    def forward(self, graph: AtomicGraph) -> ModelOutput:
        out = self.net(graph)
        if self.e0_delta is None and self.shift_delta is None:
            return out
        atomic = out.atomic_energies
        if self.e0_delta is not None:
            delta = self.e0_delta * self.e0_mask
            atomic = atomic + delta[self.net.species(graph.atomic_numbers)]
        if self.shift_delta is not None:
            atomic = atomic + self.shift_delta * self.coordination(graph)
        energy = torch.zeros_like(out.energy).index_add(0, graph.batch, atomic)
        return ModelOutput(
            energy=energy, atomic_energies=atomic, outputs=out.outputs, charges=out.charges
        )

    def export(self, dtype: torch.dtype | None = None) -> EnergyModel:
        """The complete model (E0 + δ in its config) with this network's weights."""
        e0 = dict(self.full_config.e0)
        if self.e0_delta is not None:
            deltas = (self.e0_delta * self.e0_mask).tolist()
            for element, delta in zip(self.config.elements, deltas, strict=True):
                e0[element] = e0.get(element, 0.0) + delta
        shift = self.full_config.shift
        if self.shift_delta is not None:
            shift += float(self.shift_delta.detach())
        config = self.full_config.model_copy(update={"e0": e0, "shift": shift})
        model = model_from_config(config, seed=0, dtype=dtype or self.dtype)
        model.load_state_dict(self.net.state_dict())
        return model

    head_name: str | None = None  # a fine-tuned model's head (equipot.transfer.heads)

    def save(self, path: Path, extra: dict | None = None) -> Path:
        return self.export().save(path, extra=extra, head_name=self.head_name)


def learnable_e0(
    option: bool | str, sources: dict[str, str], elements: list[str]
) -> bool | list[str]:
    """Elements whose E0 training refines: all (True), none (False), or with ``"auto"`` those
    whose E0 is a least-squares fit (``sources``: element → given / isolated / least-squares;
    on resume no sources are recorded and the checkpoint's mask decides)."""
    if isinstance(option, bool):
        return option
    return [e for e in elements if sources.get(e, "least-squares") == "least-squares"]
