"""All output heads of a model: constraints, reduction to systems, the field energy.

Per atom i of system s (total charge Q_s, N_s atoms, field ℰ_s in V/Å):

    q_i  ← q_i − (Σ_{j∈s} q_j − Q_s) / N_s                  charges sum to Q_s exactly
    d_i  = q_i r_i + μ_i                                     the dipole head, per atom
    Z_i  ← Z_i − (Σ_{j∈s} Z_j − Q_s 1) / N_s                 acoustic sum rule (``sum_rule``)
    E_i  ← E_i − ℰ_s·d_i − ½ ℰ_s·α_i·ℰ_s                     E(r; ℰ) = E(r) − μ·ℰ − ½ ℰ·α·ℰ
    μ_s  = Σ_{i∈s} d_i,   α_s = Σ_{i∈s} α_i                  (``reduce: mean`` divides by N_s)

q_i are fixed per element (head.py says why), μ_i translation invariant: this makes
Σ_i ∂μ/∂r_i = Q·1 for any parameters, i.e. the Born charges ∂μ/∂r_i obey the acoustic sum
rule. Where the model itself has charges
(``ModelOutput.charges``, the long-range part) the dipole uses those.

SO(3)-only models are not reflection-equivariant; their heads are projected onto the right
parity exactly, with P the inversion r → −r (and a cell → −cell) and n the rank:

    T(r) = ½ [f(r) + σ (−1)ⁿ f(−r)],     σ = +1 (tensor) or −1 (pseudo-tensor)

For every rotation R this is still equivariant, and T(−r) = σ(−1)ⁿ T(r): with rotations that
gives the full O(3) behaviour of a (pseudo-)tensor. It costs one more backbone evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from equipot.graph import AtomicGraph
from equipot.model.config import ModelConfig
from equipot.model.heads.config import FIELD_HEADS
from equipot.model.heads.features import BackboneFeatures
from equipot.model.heads.head import TensorHead


def per_system_sum(values: Tensor, batch: Tensor, num_systems: int) -> Tensor:
    out = values.new_zeros(num_systems, *values.shape[1:])
    return out.index_add(0, batch, values)


class Heads(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads = nn.ModuleDict(
            {name: TensorHead(name, head, config) for name, head in config.heads.items()}
        )
        self.project_parity = not config.parity

    @torch.no_grad()
    def normalise_inputs(self, features: BackboneFeatures) -> None:
        """Set every head's input gain so the backbone features it reads have unit RMS (on a
        sample of training structures; called once before training starts)."""
        rms = torch.cat([h.reshape(-1) for h in features.nodes]).square().mean().sqrt()
        for head in self.heads.values():
            head.input_gain.fill_(1.0 / max(float(rms), 1e-12))

    @property
    def couples_to_field(self) -> bool:
        return any(name in self.heads for name in FIELD_HEADS)

    def field_active(self, graph: AtomicGraph) -> bool:
        """True when the graph's field changes the energy (so the local engine cannot be used)."""
        efield = graph.efield
        return self.couples_to_field and (efield.requires_grad or bool((efield != 0).any()))

    def per_atom(
        self, graph: AtomicGraph, features: BackboneFeatures, model_charges: Tensor | None
    ) -> dict[str, Tensor]:
        """Per-atom outputs of every head with their constraints (module docstring)."""
        out = {}
        counts = graph.n_atoms.to(graph.positions.dtype)
        charge = graph.charge.to(graph.positions.dtype)
        for name, head in self.heads.items():
            tensor, q = head(features)
            c = head.config
            if c.charges:
                if model_charges is not None:
                    q = model_charges
                else:
                    excess = per_system_sum(q, graph.batch, graph.num_systems) - charge
                    q = q - (excess / counts)[graph.batch]
                    out["charges"] = q
                tensor = tensor + q.unsqueeze(1) * graph.positions
            if c.sum_rule:
                eye = torch.eye(3, dtype=tensor.dtype, device=tensor.device)
                excess = per_system_sum(tensor, graph.batch, graph.num_systems)
                excess = excess - charge[:, None, None] * eye
                tensor = tensor - (excess / counts[:, None, None])[graph.batch]
            out[name] = tensor
        return out

    def forward(
        self,
        graph: AtomicGraph,
        atomic: Tensor,
        features: BackboneFeatures,
        backbone: Callable[[AtomicGraph], tuple[Tensor, BackboneFeatures]],
        model_charges: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Atomic energies with the field terms, and the outputs: per-system heads (S, …),
        per-atom heads (N, …), ``charges`` (N,) where the dipole learned its own."""
        values = self.per_atom(graph, features, model_charges)
        if self.project_parity:
            mirror = graph.replace(positions=-graph.positions, cell=-graph.cell)
            mirrored = self.per_atom(mirror, backbone(mirror)[1], model_charges)
            for name, value in values.items():
                head = self.heads[name] if name in self.heads else None
                rank = head.rank if head is not None else 0
                sign = (-1) ** rank * (-1 if head is not None and head.config.pseudo else 1)
                values[name] = 0.5 * (value + sign * mirrored[name])
        efield = graph.efield.to(atomic.dtype)[graph.batch]  # (N, 3)
        if "dipole" in values:
            atomic = atomic - (efield * values["dipole"]).sum(1)
        if "polarizability" in values:
            atomic = atomic - 0.5 * torch.einsum(
                "na,nab,nb->n", efield, values["polarizability"], efield
            )
        outputs = {}
        counts = graph.n_atoms.to(atomic.dtype)
        for name, value in values.items():
            head = self.heads[name] if name in self.heads else None
            if head is None or head.config.per == "atom":
                outputs[name] = value
                continue
            total = per_system_sum(value, graph.batch, graph.num_systems)
            if head.config.reduce == "mean":
                total = total / counts.view(-1, *(1,) * (total.ndim - 1))
            outputs[name] = total
        return atomic, outputs
