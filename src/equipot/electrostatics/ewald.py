"""Ewald summation's reciprocal-space part, through torch-pme's ``EwaldCalculator``.

For one periodic cell (volume V) and a kernel split at η (:mod:`~.kernels`),

    φ_i^rec = (1/V) Σ_k ṽ_lr(k; η) Σ_j q_j cos(k·(r_i − r_j))  −  q_i v_lr(0; η)  −  2βQ/V

over all reciprocal vectors k = 2π m·B with |m_a| ≤ k_c |a_a| / 2π (a box enclosing the
sphere |k| ≤ k_c); the k = 0 term is kept for Yukawa and dropped (background β) for
Coulomb. torch-pme evaluates this with our kernel plugged in as a ``Potential``; the
real-space part is summed by :mod:`~.realspace` for every method alike.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from equipot.electrostatics.kernels import PairKernel


def _torchpme():
    try:
        import torchpme
    except ImportError:  # pragma: no cover - the extra is part of `dev`
        raise ImportError(
            "method='ewald' needs torch-pme: pip install 'equipot[electrostatics]'"
        ) from None
    return torchpme


@functools.cache
def _potential_class():
    """Our kernel as a torch-pme ``Potential`` (reciprocal part, self and background)."""

    class KernelPotential(_torchpme().potentials.Potential):
        def __init__(self, kernel: PairKernel, eta: float):
            super().__init__(smearing=eta)
            self.kernel, self.eta = kernel, eta

        def lr_from_k_sq(self, k_sq: Tensor) -> Tensor:
            return self.kernel.fourier(k_sq, self.eta)

        def self_contribution(self) -> Tensor:
            return self.smearing.new_tensor(self.kernel.self_value(self.eta))

        def background_correction(self) -> Tensor:
            return self.smearing.new_tensor(self.kernel.background(self.eta))

        def sr_from_dist(self, dist: Tensor, pair_mask: Tensor | None = None) -> Tensor:
            return torch.zeros_like(dist)  # real space: equipot.electrostatics.realspace

    return KernelPotential


def ewald_reciprocal(
    positions: Tensor, charges: Tensor, cell: Tensor, kernel: PairKernel, eta: float, k_cut: float
) -> Tensor:
    """φ_i^rec (N,) of one cell (module docstring), in units of e/Å; charges (N,) or (N, M)."""
    calculator = _torchpme().EwaldCalculator(
        _potential_class()(kernel, eta).to(positions.dtype),
        # torch-pme keeps |m_a| ≤ ⌈2π/λ · |a_a|/2π⌉ / 2 (an FFT-style frequency range), so
        # λ = π/k_c reaches |k| = k_c along every direction
        lr_wavelength=math.pi / k_cut,
        full_neighbor_list=True,
    )
    no_pairs = torch.zeros((0, 2), dtype=torch.int64, device=positions.device)
    no_distances = positions.new_zeros(0)
    # torch-pme returns V_i = ½ φ_i (its energy is Σ_i q_i V_i)
    channels = charges.unsqueeze(1) if charges.dim() == 1 else charges
    half = calculator(channels, cell, positions, no_pairs, no_distances)
    return 2.0 * (half.squeeze(1) if charges.dim() == 1 else half)
