"""Radial basis with a smooth cutoff, and the MLP that turns it into path weights.

    b_n(r) = sqrt(2/r_c) · sin(nπ r / r_c) / r                 (spherical Bessel j_0 basis)
    u(d)   = 1 − (p+1)(p+2)/2·d^p + p(p+2)·d^(p+1) − p(p+1)/2·d^(p+2),   d = r/r_c < 1
    u(d)   = 0                                                  for d ≥ 1

u and its first two derivatives vanish at r_c, and the MLP has no biases and SiLU(0) = 0, so
R(r) = MLP(b(r)·u(r)) and its first two derivatives go to zero continuously at r_c: energies,
forces and Hessians are continuous as neighbours cross the cutoff.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor, nn

from equipot.nn.constants import Constants
from equipot.nn.linear import SILU_SCALE, init_weight


class BesselBasis(nn.Module):
    def __init__(self, r_max: float, num_basis: int = 8):
        super().__init__()
        self.r_max = r_max
        self.prefactor = math.sqrt(2.0 / r_max)
        self.constants = Constants(frequencies=np.arange(1, num_basis + 1) * math.pi / r_max)

    def forward(self, r: Tensor) -> Tensor:
        """r: (...,) → (..., num_basis)."""
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.constants.get("frequencies", r) * r) / r

    def value_and_derivative(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """b_n(r) and b_n'(r) = √(2/r_c) (f_n r cos(f_n r) − sin(f_n r)) / r²."""
        r = r.unsqueeze(-1)
        fr = self.constants.get("frequencies", r) * r
        sin, cos = torch.sin(fr), torch.cos(fr)
        return self.prefactor * sin / r, self.prefactor * (fr * cos - sin) / (r * r)


class PolynomialEnvelope(nn.Module):
    def __init__(self, r_max: float, p: int = 6):
        super().__init__()
        self.r_max = r_max
        self.p = p

    def forward(self, r: Tensor) -> Tensor:
        p = self.p
        d = r / self.r_max
        d_p = d**p
        value = (
            1.0
            - (p + 1) * (p + 2) / 2 * d_p
            + p * (p + 2) * d_p * d
            - p * (p + 1) / 2 * d_p * d * d
        )
        return torch.where(d < 1.0, value, torch.zeros_like(value))

    def value_and_derivative(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """u(r) and u'(r) = (p/r_c)·d^(p−1)·(−(p+1)(p+2)/2 + (p+1)(p+2)·d − (p+1)(p+2)/2·d²)."""
        p = self.p
        d = r / self.r_max
        d_p1 = d ** (p - 1)
        d_p = d_p1 * d
        c = (p + 1) * (p + 2) / 2
        value = 1.0 - c * d_p + p * (p + 2) * d_p * d - p * (p + 1) / 2 * d_p * d * d
        slope = (p / self.r_max) * d_p1 * (-c + 2 * c * d - c * d * d)
        inside = d < 1.0
        zero = torch.zeros_like(value)
        return torch.where(inside, value, zero), torch.where(inside, slope, zero)


class RadialMLP(nn.Module):
    """Bias-free MLP with normalised SiLU: (..., num_basis) → (..., num_out).

    The SiLU normalisation constant is applied to the (small) next weight matrix rather than
    to the (large, per-edge) activations.
    """

    def __init__(self, num_basis: int, hidden: list[int], num_out: int):
        super().__init__()
        sizes = [num_basis, *hidden, num_out]
        self.weights = nn.ParameterList(
            [nn.Parameter(init_weight(a, b)) for a, b in itertools.pairwise(sizes)]
        )

    def forward(self, x: Tensor) -> Tensor:
        first, *rest = self.weights
        x = x @ first
        for w in rest:
            x = torch.nn.functional.silu(x) @ (w * SILU_SCALE)
        return x
