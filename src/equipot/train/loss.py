"""Weighted energy / force / stress loss with normalisation over the *global* batch.

    L = w_E · Σ_s c_s ρ(ΔE_s / N_s) / n_E
      + w_F · Σ_(i,a) c_s(i) e_z(i) ρ(ΔF_ia) / n_F
      + w_S · Σ_(s,ab) c_s ρ(Δσ_sab) / n_S
      + Σ_t w_t · Σ_(rows, components) c ρ(ΔT_t) / n_t      (tensor labels t: dipole, bec…)

ρ(x) = x² (MSE) or 2·Huber_δ(x) (equal to x² for |x| ≤ δ, linear beyond); c_s the config
weight (file weight × config-type weight), e_z a per-element force weight (rare elements can
be up-weighted). n_E, n_F, n_S count systems, force components and stress components in the
global batch. With data parallelism every process sums over its shard but divides by the
global counts, so the per-process losses add up to the single-process loss and summed
gradients are identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase.data import atomic_numbers as Z_OF
from torch import Tensor

from equipot.data.dataset import Batch
from equipot.physics.derivatives import Prediction


@dataclass(frozen=True)
class LossWeights:
    energy: float
    forces: float
    stress: float
    labels: dict[str, float] = field(default_factory=dict)  # tensor label name → weight


@dataclass(frozen=True)
class LossFunction:
    weights: LossWeights
    kind: str = "mse"  # or "huber"
    huber_delta: float = 0.01
    element_weights: Tensor | None = None  # (119,) per atomic number, for force terms

    @classmethod
    def create(cls, weights: LossWeights, kind: str, delta: float, elements: dict[str, float]):
        table = None
        if elements:
            table = torch.ones(119, dtype=torch.float64)
            for element, w in elements.items():
                table[Z_OF[element]] = w
        return cls(weights, kind, delta, table)

    def with_weights(self, weights: LossWeights) -> LossFunction:
        return LossFunction(weights, self.kind, self.huber_delta, self.element_weights)

    def penalty(self, x: Tensor) -> Tensor:
        if self.kind == "huber":
            return 2.0 * torch.nn.functional.huber_loss(
                x, torch.zeros_like(x), reduction="none", delta=self.huber_delta
            )
        return x.square()


@dataclass(frozen=True)
class Normalisation:
    """Counts in the global batch: systems, force components, stress components, and the
    labelled components of every tensor label."""

    energy: int
    forces: int
    stress: int
    labels: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        num_atoms: np.ndarray,
        has_forces: np.ndarray,
        has_stress: np.ndarray,
        labels: dict[str, tuple[np.ndarray, bool, int]] | None = None,
    ):
        """``labels``: name → (has (S,), per atom?, components per row)."""
        counts = {}
        for name, (has, per_atom, size) in (labels or {}).items():
            rows = num_atoms[has].sum() if per_atom else has.sum()
            counts[name] = size * int(rows)
        return cls(
            energy=len(num_atoms),
            forces=3 * int(num_atoms[has_forces].sum()),
            stress=9 * int(has_stress.sum()),
            labels=counts,
        )


def loss_terms(
    pred: Prediction, batch: Batch, loss: LossFunction, norm: Normalisation
) -> dict[str, Tensor]:
    """The weighted terms of L for this process's share of the batch (sum them for L)."""
    terms = {}
    w = loss.weights
    dtype = pred.energy.dtype
    config = batch.weight.to(dtype)
    if w.energy:
        delta = (pred.energy - batch.energy) / batch.graph.n_atoms.to(dtype)
        terms["energy"] = w.energy * (config * loss.penalty(delta)).sum() / max(norm.energy, 1)
    if w.forces and pred.forces is not None:
        per_atom = config[batch.graph.batch] * batch.atom_has_forces.to(dtype)
        if loss.element_weights is not None:
            per_atom = per_atom * loss.element_weights.to(dtype)[batch.graph.atomic_numbers]
        penalty = loss.penalty(pred.forces - batch.forces).sum(1)
        terms["forces"] = w.forces * (per_atom * penalty).sum() / max(norm.forces, 1)
    if w.stress and pred.stress is not None:
        mask = batch.has_stress[:, None, None]
        difference = torch.where(mask, pred.stress - batch.stress, 0.0)
        penalty = loss.penalty(difference).sum((1, 2))
        terms["stress"] = w.stress * (config * penalty).sum() / max(norm.stress, 1)
    for name, weight in w.labels.items():
        if not weight or name not in batch.labels:
            continue
        reference = batch.labels[name].to(dtype)
        per_atom = name in batch.per_atom_labels
        has = batch.has_labels[name]
        row_weight = config * has.to(dtype)
        if per_atom:
            row_weight = row_weight[batch.graph.batch]
        value = pred.outputs[name].reshape(reference.shape)
        # unlabelled rows may hold NaN (the dipole of a periodic cell): they must not count
        difference = torch.where(row_weight[:, None] > 0, value - reference, 0.0)
        penalty = loss.penalty(difference).sum(1)
        terms[name] = weight * (row_weight * penalty).sum() / max(norm.labels.get(name, 0), 1)
    return terms
