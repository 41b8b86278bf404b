"""Latent-space distance: a per-element Gaussian fit of the readout features.

For atoms of element z with readout features φ̃_i (D,) (:meth:`EnergyModel.forward`), the fit
over a training set gives the mean μ_z and covariance Σ_z (ridge-regularised: Σ_z + ε·tr Σ_z/D·I,
so features the data never varied do not divide by zero). With Σ_z = L_z L_zᵀ (Cholesky),

    u_i = L_z⁻¹ (φ̃_i − μ_z)          whitened features: zero mean, unit covariance on the fit data
    d_i = ‖u_i‖ / √D                   the latent distance (Mahalanobis, per feature)

so d² averages 1 over the fitting data, whatever D; an atom whose environment the training
set did not contain sits many "standard deviations" away. Elements absent from the fit get
d = ∞.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

WHOLE_BATCH_LIMIT = 1 << 22  # E·N·D entries (32 MB in float64) whitened in one product


class FeatureMoments:
    """Streaming per-element count, sum and sum of outer products of features (float64),
    taken about each element's first-seen mean (so the covariance does not lose digits to
    the cancellation in E[xxᵀ] − μμᵀ)."""

    def __init__(self, num_features: int):
        self.D = num_features
        self.count: dict[int, int] = {}
        self.origin: dict[int, np.ndarray] = {}
        self.sum: dict[int, np.ndarray] = {}
        self.outer: dict[int, np.ndarray] = {}

    def add(self, features: Tensor, atomic_numbers: Tensor) -> None:
        x = features.detach().to(torch.float64).cpu().numpy()
        z = atomic_numbers.cpu().numpy()
        for element in np.unique(z):
            rows = x[z == element]
            key = int(element)
            if key not in self.count:
                self.count[key] = 0
                self.origin[key] = rows.mean(0)
                self.sum[key] = np.zeros(self.D)
                self.outer[key] = np.zeros((self.D, self.D))
            rows = rows - self.origin[key]
            self.count[key] += len(rows)
            self.sum[key] += rows.sum(0)
            self.outer[key] += rows.T @ rows

    def gaussian(self, ridge: float = 1e-6) -> LatentGaussian:
        if not self.count:
            raise ValueError("no features to fit a latent-space Gaussian to")
        elements = sorted(self.count)
        means, factors = [], []
        for z in elements:
            n = self.count[z]
            offset = self.sum[z] / n
            cov = self.outer[z] / n - np.outer(offset, offset)
            cov = 0.5 * (cov + cov.T)
            floor = ridge * max(float(np.trace(cov)) / self.D, 1e-30)
            means.append(self.origin[z] + offset)
            factors.append(np.linalg.cholesky(cov + floor * np.eye(self.D)))
        return LatentGaussian(
            atomic_numbers=elements,
            means=torch.as_tensor(np.stack(means)),
            cholesky=torch.as_tensor(np.stack(factors)),
            counts=[self.count[z] for z in elements],
        )


@dataclass
class LatentGaussian:
    """μ_z (E, D) and the Cholesky factors L_z (E, D, D) per atomic number (module docstring)."""

    atomic_numbers: list[int]
    means: Tensor
    cholesky: Tensor
    counts: list[int]
    _cache: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, features: Tensor, atomic_numbers: Tensor, ridge: float = 1e-6) -> LatentGaussian:
        moments = FeatureMoments(features.shape[1])
        moments.add(features, atomic_numbers)
        return moments.gaussian(ridge)

    @property
    def num_features(self) -> int:
        return int(self.means.shape[1])

    def whitening_tables(self) -> tuple[Tensor, Tensor]:
        """(L_z⁻¹ (E, D, D), table atomic number → row of the fit, −1 if absent), cached:
        whitening is then one batched product for all elements, not a masked solve each."""
        if self._cache is None:
            eye = torch.eye(self.num_features, dtype=torch.float64).expand_as(self.cholesky)
            inverse = torch.linalg.solve_triangular(self.cholesky, eye, upper=False)
            table = torch.full((max(self.atomic_numbers) + 1,), -1, dtype=torch.long)
            table[torch.tensor(self.atomic_numbers)] = torch.arange(len(self.atomic_numbers))
            self._cache = (inverse, table)
        return self._cache

    def whitened(self, features: Tensor, atomic_numbers: Tensor) -> Tensor:
        """u_i (N, D) in float64; rows of elements absent from the fit are ∞."""
        x = features.detach().to(torch.float64).cpu()
        z = atomic_numbers.cpu()
        inverse, table = self.whitening_tables()
        row = torch.where(z < len(table), table[z.clamp_max(len(table) - 1)], -1)
        if len(self.atomic_numbers) == 1:
            u = (x - self.means[0]) @ inverse[0].T
        elif x.numel() * len(self.atomic_numbers) <= WHOLE_BATCH_LIMIT:
            # (E, N, D): every element's whitening of every atom, then each atom's own
            u_all = (x.unsqueeze(0) - self.means.unsqueeze(1)) @ inverse.transpose(1, 2)
            u = u_all[row.clamp_min(0), torch.arange(len(x))]
        else:  # large systems: one product per element present
            u = torch.empty_like(x)
            for k in range(len(self.atomic_numbers)):
                rows = row == k
                u[rows] = (x[rows] - self.means[k]) @ inverse[k].T
        return u.masked_fill((row < 0).unsqueeze(1), torch.inf)

    def distance(self, features: Tensor, atomic_numbers: Tensor) -> Tensor:
        """d_i (N,) = ‖u_i‖/√D, float64."""
        u = self.whitened(features, atomic_numbers)
        return torch.linalg.vector_norm(u, dim=1) / self.num_features**0.5

    # ---------------------------------------------------------------- storage
    def tensors(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}means": self.means, f"{prefix}cholesky": self.cholesky}

    def metadata(self) -> dict:
        return {"atomic_numbers": self.atomic_numbers, "counts": self.counts}

    @classmethod
    def restore(cls, metadata: dict, tensors: dict[str, Tensor], prefix: str) -> LatentGaussian:
        return cls(
            atomic_numbers=[int(z) for z in metadata["atomic_numbers"]],
            means=tensors[f"{prefix}means"].to(torch.float64),
            cholesky=tensors[f"{prefix}cholesky"].to(torch.float64),
            counts=[int(c) for c in metadata["counts"]],
        )
