"""Last-layer Laplace (LLPR-style) uncertainty of energies and forces.

The atomic energy is affine in the readout weights θ (D,) with the readout features φ̃_i as
gradient (:meth:`EnergyModel.forward`): E_s = c_s + Φ_s·θ with Φ_s = Σ_{i∈s} φ̃_i, and
F_ia = −∂c_s/∂r_ia − J_ia·θ with J_ia = ∂Φ_s/∂r_ia. With the training loss of
:mod:`equipot.train.loss` (MSE; config weights c_s, element force weights e_z)

    L(θ) = w_E/n_E Σ_s c_s (ΔE_s/N_s)² + w_F/n_F Σ_(i,a) c_s e_z ΔF_ia²

the loss is quadratic in θ, so its Hessian is exact, not a Gauss–Newton approximation:

    G = ½ ∇²_θ L = w_E/n_E Σ_s c_s Φ_s Φ_sᵀ / N_s² + w_F/n_F Σ_(i,a) c_s e_z J_ia J_iaᵀ

(``gram``). The Laplace posterior of θ given the training set has covariance
C = τ² (G + λ I)⁻¹ (prior precision λ), and predictions linear in θ get the variances

    σ²(E_s) = τ_E² Φ_sᵀ C₁ Φ_s,   σ²(E_i) = τ_E² φ̃_iᵀ C₁ φ̃_i,   σ²(F_ia) = τ_F² J_iaᵀ C₁ J_ia

with C₁ = (G + λI)⁻¹. λ and the scales τ_E², τ_F² are calibrated on held-out data
(:mod:`equipot.uq.calibration`); with τ = 1 these are the plain Laplace variances (the tests
check them against autograd Hessians of the loss). Energy and local variances cost a D×D
product per atom on top of the features; force variances need the Jacobian J, D backward
passes (:func:`feature_jacobian`), so they are for evaluation, not for every MD step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from equipot.graph import AtomicGraph


def system_features(features: Tensor, graph: AtomicGraph) -> Tensor:
    """Φ_s = Σ_{i∈s} φ̃_i, (S, D)."""
    out = features.new_zeros(graph.num_systems, features.shape[1])
    return out.index_add_(0, graph.batch, features)


JACOBIAN_CHUNK = 1  # cotangents per backward pass (see feature_jacobian)


def feature_jacobian(
    model: torch.nn.Module, graph: AtomicGraph, *, chunk: int = JACOBIAN_CHUNK
) -> Tensor:
    """J (N, 3, D) with J_ia = ∂Φ_s/∂r_ia for the system s of atom i (autograd: D backward
    passes; ``chunk`` > 1 vmaps that many into one).

    One cotangent at a time is the default: a vmapped backward runs the PyTorch reference of
    every layer (the kernels' backward takes one cotangent) and keeps a copy of every
    intermediate gradient per cotangent. Measured on two rattled 32-atom Cu cells with a
    64-channel, l_max 3 model (D = 80), one thread: chunk 1 7.7 s / 0.48 GB peak, chunk 4
    39 s / 1.46 GB; all 80 at once ran a 3-frame fit out of 22 GB."""
    positions = graph.positions.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(graph.replace(positions=positions), features=True)
        total = out.features.sum(0)  # Σ over all systems: atom i only enters its own Φ_s
        d = total.shape[0]
        eye = torch.eye(d, dtype=total.dtype, device=total.device)
        parts = []
        for start in range(0, d, max(1, chunk)):
            rows = eye[start : start + max(1, chunk)]
            batched = len(rows) > 1  # one cotangent: the kernels' own backward, no vmap
            (jac,) = torch.autograd.grad(
                total,
                positions,
                grad_outputs=rows if batched else rows[0],
                is_grads_batched=batched,
                retain_graph=start + len(rows) < d,
            )
            parts.append(jac.detach() if batched else jac.detach()[None])
    return torch.cat(parts).permute(1, 2, 0)


class GramAccumulator:
    """Sums over a training set for G (module docstring), normalised at the end."""

    def __init__(self, num_features: int, energy_weight: float, forces_weight: float):
        self.energy_weight, self.forces_weight = energy_weight, forces_weight
        self.energy = np.zeros((num_features, num_features))
        self.forces = np.zeros((num_features, num_features))
        self.num_systems = 0
        self.num_force_components = 0

    def add_energies(self, phi: Tensor, num_atoms: Tensor, weight: Tensor) -> None:
        """Φ_s (S, D), N_s (S,), c_s (S,)."""
        rows = (phi.detach().double() / num_atoms.double()[:, None]).cpu().numpy()
        self.energy += (rows * weight.double().cpu().numpy()[:, None]).T @ rows
        self.num_systems += len(rows)

    def add_forces(self, jacobian: Tensor, atom_weight: Tensor) -> None:
        """J (N, 3, D) and c_s·e_z per atom (N,) (zero for atoms without force labels)."""
        rows = jacobian.detach().double().reshape(-1, jacobian.shape[2]).cpu().numpy()
        w = np.repeat(atom_weight.double().cpu().numpy(), 3)
        self.forces += (rows * w[:, None]).T @ rows
        self.num_force_components += int(np.count_nonzero(w))

    def gram(self) -> np.ndarray:
        g = np.zeros_like(self.energy)
        if self.num_systems and self.energy_weight:
            g += self.energy_weight / self.num_systems * self.energy
        if self.num_force_components and self.forces_weight:
            g += self.forces_weight / self.num_force_components * self.forces
        return 0.5 * (g + g.T)


@dataclass
class LastLayerPosterior:
    """G, λ and the calibration scales τ_E², τ_F² (module docstring)."""

    gram: Tensor  # (D, D) float64
    regularizer: float  # λ
    energy_scale: float = 1.0  # τ_E²
    force_scale: float = 1.0  # τ_F²
    _eig: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    def eig(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues g (D,) and eigenvectors V (D, D) of G."""
        if self._eig is None:
            values, vectors = torch.linalg.eigh(self.gram.to(torch.float64))
            self._eig = (values.clamp_min(0.0), vectors)
        return self._eig

    def with_(self, **changes) -> LastLayerPosterior:
        fields = {
            "gram": self.gram,
            "regularizer": self.regularizer,
            "energy_scale": self.energy_scale,
            "force_scale": self.force_scale,
        }
        return LastLayerPosterior(**(fields | changes), _eig=self._eig)

    def projected(self, x: Tensor) -> Tensor:
        """Vᵀx along the last axis (float64): variances for any λ from these."""
        return x.to(torch.float64) @ self.eig()[1]

    def raw_variance(self, x: Tensor, regularizer: float | None = None) -> Tensor:
        """xᵀ (G + λI)⁻¹ x along the last axis of x (τ = 1)."""
        lam = self.regularizer if regularizer is None else regularizer
        g = self.eig()[0]
        return (self.projected(x).square() / (g + lam)).sum(-1)

    def energy_variance(self, phi: Tensor) -> Tensor:
        """σ²(E_s) (S,) eV² from Φ_s (S, D); or σ²(E_i) (N,) from φ̃_i (N, D)."""
        return self.energy_scale * self.raw_variance(phi)

    def force_variance(self, jacobian: Tensor) -> Tensor:
        """σ²(F_ia) (N, 3) (eV/Å)² from J (N, 3, D)."""
        return self.force_scale * self.raw_variance(jacobian)

    # ---------------------------------------------------------------- storage
    def tensors(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}gram": self.gram}

    def metadata(self) -> dict:
        return {
            "regularizer": self.regularizer,
            "energy_scale": self.energy_scale,
            "force_scale": self.force_scale,
        }

    @classmethod
    def restore(cls, metadata: dict, tensors: dict[str, Tensor], prefix: str):
        return cls(
            gram=tensors[f"{prefix}gram"].to(torch.float64),
            regularizer=float(metadata["regularizer"]),
            energy_scale=float(metadata["energy_scale"]),
            force_scale=float(metadata["force_scale"]),
        )
