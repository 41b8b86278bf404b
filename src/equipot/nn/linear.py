"""Equivariant linear maps on irreps features and the few scalar helpers around them.

Node features use the layout ``(N, D, C)``: ``D = (l_max+1)²`` spherical components (degree
``l`` is rows ``l²..(l+1)²``), ``C`` channels last so per-channel products vectorise. A linear
map may only mix channels within one ``l`` (mixing components or degrees would break
equivariance): one ``C×C'`` matrix per ``l``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from equipot.nn.species import Species


def init_weight(fan_in: int, fan_out: int, *leading: int) -> Tensor:
    """Weights ~ N(0, 1/fan_in) so a product with unit-variance inputs has unit variance."""
    return torch.randn(*leading, fan_in, fan_out, dtype=torch.float64) / math.sqrt(fan_in)


def _silu_second_moment() -> float:
    z = np.linspace(-12.0, 12.0, 200_001)
    density = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    silu = z / (1.0 + np.exp(-z))
    return float(np.sum(silu**2 * density) * (z[1] - z[0]))


SILU_SCALE = 1.0 / math.sqrt(_silu_second_moment())


class NormalizedSiLU(nn.Module):
    """SiLU scaled to unit second moment on N(0, 1) inputs (smooth, and SiLU(0) = 0)."""

    scale = SILU_SCALE

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.silu(x) * self.scale


def l_slice(l: int) -> slice:
    return slice(l * l, (l + 1) * (l + 1))


class IrrepsLinear(nn.Module):
    """``y_l = x_l W_l`` for l = 0..lmax_out: (N, (lmax+1)², C_in) → (N, (lmax_out+1)², C_out).

    ``lmax_out`` ≤ ``lmax`` drops the higher degrees (e.g. the last layer keeps only scalars).
    """

    def __init__(self, lmax: int, channels_in: int, channels_out: int, lmax_out: int | None = None):
        super().__init__()
        self.lmax_out = lmax if lmax_out is None else lmax_out
        self.weights = nn.Parameter(init_weight(channels_in, channels_out, self.lmax_out + 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.lmax_out == 0:
            return x[:, :1] @ self.weights[0]
        x = x[:, : (self.lmax_out + 1) ** 2]
        blocks = torch.split(x, [2 * l + 1 for l in range(self.lmax_out + 1)], dim=1)
        return torch.cat([b @ w for b, w in zip(blocks, self.weights, strict=True)], 1)


class ElementIrrepsLinear(nn.Module):
    """A separate :class:`IrrepsLinear` per chemical element (the species-aware skip path).

    ``y_n,l = x_n,l W_l[z_n]``. One element present: a plain product. A mixture: one product
    against all elements' weights and a per-atom selection (cheap for the few elements of a
    typical model; no per-element loops).
    """

    def __init__(self, num_elements: int, lmax: int, channels_in: int, channels_out: int):
        super().__init__()
        self.lmax = lmax
        self.num_elements = num_elements
        self.weights = nn.Parameter(init_weight(channels_in, channels_out, lmax + 1, num_elements))

    def forward(self, x: Tensor, species: Species) -> Tensor:
        n = x.shape[0]
        blocks = torch.split(
            x[:, : (self.lmax + 1) ** 2], [2 * l + 1 for l in range(self.lmax + 1)], 1
        )
        parts = []
        for l, x_l in enumerate(blocks):
            if species.single is not None:
                parts.append(x_l @ self.weights[l, species.single])
            else:
                w = self.weights[l].permute(1, 0, 2).reshape(x.shape[2], -1)  # (C, E·C')
                y = (x_l @ w).view(n, 2 * l + 1, self.num_elements, -1)
                parts.append(y[torch.arange(n, device=x.device), :, species.index])
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]
