"""The network being trained, and model files written from it.

Training fits ``E − Σ_i E0[z_i]`` (labels referenced in float64), so the network's own E0 is
zero. With ``learn_e0`` / ``learn_shift`` a trainable per-element offset δ and a trainable
coordination coefficient s are added (ρ_i: the model's smooth coordination):

    E_train = Σ_i (E_net,i + δ[z_i] + s·ρ_i),     saved model: E0' = E0 + δ,  shift' = shift + s

Adam moves δ and s directly. A uniform energy offset (invisible to forces) and the energy of
under-coordinated atoms relative to bulk ones (surfaces, vacancies; weakly constrained by
forces) are otherwise slow modes that the network could only reach through its
environment-dependent features, and they lag far behind the forces.
"""

from __future__ import annotations

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
        learn_e0: bool,
        learn_shift: bool = False,
    ):
        super().__init__()
        self.full_config = config
        self.net = model_from_config(config.model_copy(update={"e0": {}}), seed=seed, dtype=dtype)
        self.net.set_execution(kernels=False, memory_efficient=False)
        self.e0_delta = (
            nn.Parameter(torch.zeros(len(config.elements), dtype=dtype)) if learn_e0 else None
        )
        self.shift_delta = nn.Parameter(torch.zeros((), dtype=dtype)) if learn_shift else None
        self.envelope = PolynomialEnvelope(config.r_max, config.envelope_exponent)

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def dtype(self) -> torch.dtype:
        return self.net.dtype

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
            atomic = atomic + self.e0_delta[self.net.species(graph.atomic_numbers)]
        if self.shift_delta is not None:
            atomic = atomic + self.shift_delta * self.coordination(graph)
        energy = torch.zeros_like(out.energy).index_add(0, graph.batch, atomic)
        return ModelOutput(energy=energy, atomic_energies=atomic, charges=out.charges)

    def export(self, dtype: torch.dtype | None = None) -> EnergyModel:
        """The complete model (E0 + δ in its config) with this network's weights."""
        e0 = dict(self.full_config.e0)
        if self.e0_delta is not None:
            for element, delta in zip(self.config.elements, self.e0_delta.tolist(), strict=True):
                e0[element] = e0.get(element, 0.0) + delta
        shift = self.full_config.shift
        if self.shift_delta is not None:
            shift += float(self.shift_delta.detach())
        config = self.full_config.model_copy(update={"e0": e0, "shift": shift})
        model = model_from_config(config, seed=0, dtype=dtype or self.dtype)
        model.load_state_dict(self.net.state_dict())
        return model

    def save(self, path: Path, extra: dict | None = None) -> Path:
        return self.export().save(path, extra=extra)
