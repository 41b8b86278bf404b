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


def _monomials(u: Tensor, lmax: int) -> Tensor:
    """All products of up to ``lmax`` components of ``u`` (with repeats), shape (..., Σ 3^k)."""
    terms = [torch.ones_like(u[..., :1])]
    power = None
    for _ in range(lmax):
        power = u if power is None else (power.unsqueeze(-1) * u.unsqueeze(-2)).flatten(-2)
        terms.append(power)
    return torch.cat(terms, dim=-1)


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

    def forward(self, vectors: Tensor) -> Tensor:
        unit = vectors / torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        return _monomials(unit, self.lmax) @ self.constants.get("coefficients", unit)
