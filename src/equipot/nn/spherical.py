"""Real spherical harmonics Y_lm(r̂) as one small matrix product.

On unit vectors ``u`` every Y_l is a homogeneous polynomial of degree ``l``. We evaluate the
monomials ``[1, u, u⊗u, u⊗u⊗u, ...]`` and multiply by a fixed coefficient matrix fitted once
(exactly, in float64) to :func:`e3nn.o3.spherical_harmonics`, so our harmonics live in e3nn's
real basis — the basis of the Clebsch–Gordan coefficients from :func:`e3nn.o3.wigner_3j` —
while costing a handful of tensor ops instead of e3nn's ~40 (that matters for small molecules,
where per-op overhead dominates). Normalisation is e3nn's ``"component"``: ``|Y_l|² = 2l+1``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from e3nn import o3
from torch import Tensor, nn

from equipot.nn.constants import Constants


def _powers(u: Tensor, lmax: int) -> list[Tensor]:
    """[1, u, u⊗u, ...]: the tensor powers of ``u`` up to ``lmax``, each flattened (..., 3^k)."""
    powers = [torch.ones_like(u[..., :1])]
    for k in range(1, lmax + 1):
        powers.append(u if k == 1 else (powers[-1].unsqueeze(-1) * u.unsqueeze(-2)).flatten(-2))
    return powers


def _monomials(u: Tensor, lmax: int) -> Tensor:
    """All products of up to ``lmax`` components of ``u`` (with repeats), shape (..., Σ 3^k)."""
    return torch.cat(_powers(u, lmax), dim=-1)


@functools.cache
def monomial_coefficients(lmax: int) -> np.ndarray:
    """Matrix ``C`` with ``Y(u) = monomials(u) @ C`` for unit ``u``; shape (Σ 3^k, (lmax+1)²).

    Each degree-l block is solved by least squares on random points: the fit is exact because
    r^l·Y_l(r̂) is a homogeneous degree-l polynomial (checked against e3nn in the tests).
    """
    rng = np.random.default_rng(0)
    points = torch.as_tensor(rng.normal(size=(400, 3)), dtype=torch.float64)
    blocks = []
    for degree in range(lmax + 1):
        target = o3.spherical_harmonics(degree, points, normalize=False, normalization="component")
        power = _monomials(points, degree)[:, -(3**degree) :]
        solution = torch.linalg.lstsq(power, target, driver="gelsd").solution
        blocks.append(solution.numpy())
    coeffs = np.zeros((sum(3**k for k in range(lmax + 1)), (lmax + 1) ** 2))
    row = 0
    for degree, block in enumerate(blocks):
        coeffs[row : row + 3**degree, degree**2 : (degree + 1) ** 2] = block
        row += 3**degree
    coeffs[np.abs(coeffs) < 1e-12] = 0.0
    return coeffs


class SphericalHarmonics(nn.Module):
    """Y_lm(r̂) for l = 0..lmax of (unnormalised) vectors; output (..., (lmax+1)²)."""

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = lmax
        self.constants = Constants(coefficients=monomial_coefficients(lmax))

    def forward(self, vectors: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            lengths = torch.linalg.vector_norm(vectors, dim=-1)
        unit = vectors / lengths.unsqueeze(-1)
        return _monomials(unit, self.lmax) @ self.constants.get("coefficients", unit)

    def unit_vjp(self, unit: Tensor, grad: Tensor) -> Tensor:
        """∂L/∂û from ∂L/∂Y at unit vectors û (first-order backward of Y = M(û)·C).

        For the degree-k block, ∂/∂û_c Π_i û_{a_i} = Σ_i δ_{a_i c} Π_{j≠i} û_{a_j}: move each
        axis i of the block's gradient to the front and contract the rest with û^{⊗(k−1)}.
        """
        g_monomials = grad @ self.constants.get("coefficients", unit).T
        powers = _powers(unit, self.lmax - 1)
        batch = unit.shape[:-1]
        g_unit = torch.zeros_like(unit)
        start = 1
        for k in range(1, self.lmax + 1):
            block = g_monomials[..., start : start + 3**k].reshape(*batch, *([3] * k))
            start += 3**k
            for i in range(k):
                moved = torch.movedim(block, len(batch) + i, len(batch)).reshape(*batch, 3, -1)
                g_unit = g_unit + (moved * powers[k - 1].unsqueeze(-2)).sum(-1)
        return g_unit
