"""Pair interactions of unit charges and their Ewald splitting.

A :class:`PairKernel` is one of four interactions v(r) between unit charges (multiply by
k_e = e²/4πε₀ = :data:`COULOMB_CONSTANT` for eV), given by their Fourier transforms:

    point Coulomb       ṽ(k) = 4π / k²                 v(r) = 1/r
    Gaussian Coulomb    ṽ(k) = 4π e^{−k²s²/2} / k²     v(r) = erf(r/(√2 s))/r   (``smearing`` s)
    point Yukawa        ṽ(k) = 4π / (k² + κ²)          v(r) = e^{−κr}/r          (``kappa`` κ)
    Gaussian Yukawa     ṽ(k) = 4π e^{−k²s²/2} / (k² + κ²)

``smearing`` s is the width of the *pair* interaction (Gaussian charges of standard deviation
s/√2 each); s = 1 Å is the choice of latent Ewald summation (LES). Ewald splits v at a width
η ≥ s into a short-range part summed in real space and a long-range part summed in
reciprocal space, with g = e^{κ²s²/2} (1 for point charges):

    ṽ_lr(k; η) = g · 4π e^{−(k²+κ²)η²/2} / (k² + κ²),     v_sr(r; η) = v(r) − v_lr(r; η)

(v_sr ≡ 0 for η = s: the whole energy is in k-space). In closed form, with
a = r/(√2η) + κη/√2 and b = r/(√2η) − κη/√2, the point-charge short-range part is

    u_sr(r; η) = [e^{−κr} erfc(b) + e^{κr} erfc(a)] / (2r)      (erfc(r/(√2η))/r for κ = 0)

and v_sr(r; η) = g [u_sr(r; η) − u_sr(r; s)] (the second term only for Gaussian charges).
The self term is v_lr(0; η) = g [√(2/π) e^{−κ²η²/2}/η − κ erfc(κη/√2)]. For κ = 0 the
k = 0 term diverges and is dropped (a neutralising background for charged cells), which
leaves the background term −k_e π (η² − s²) Q²/V (Q the net charge; the mean of v_sr).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from ase.units import Bohr, Hartree
from torch import Tensor

COULOMB_CONSTANT = Hartree * Bohr  # e²/(4πε₀) = 14.399645 eV·Å


def _exp_erfc(x: Tensor, y: Tensor) -> Tensor:
    """e^x · erfc(y) without overflow: erfcx(y) · e^{x − y²} where y > 0 (erfcx(y) =
    e^{y²} erfc(y)); both branches are evaluated on safe values so gradients stay finite."""
    positive = y > 0
    scaled = torch.special.erfcx(torch.where(positive, y, 0.0)) * torch.exp(
        torch.where(positive, x - y * y, 0.0)
    )
    direct = torch.exp(torch.where(positive, 0.0, x)) * torch.erfc(torch.where(positive, 0.0, y))
    return torch.where(positive, scaled, direct)


@dataclass(frozen=True)
class PairKernel:
    """v(r) of two unit charges (module docstring); ``smearing`` in Å, ``kappa`` in 1/Å."""

    smearing: float | None = None
    kappa: float = 0.0

    def __post_init__(self) -> None:
        if self.smearing is not None and not self.smearing > 0:
            raise ValueError(f"smearing must be positive (Å), got {self.smearing}")
        if not self.kappa >= 0:
            raise ValueError(f"kappa (Yukawa screening, 1/Å) must be ≥ 0, got {self.kappa}")

    @property
    def width(self) -> float:
        return 0.0 if self.smearing is None else self.smearing

    def check_split(self, eta: float) -> None:
        if eta < self.width * (1 - 1e-12):
            raise ValueError(
                f"Ewald splitting width {eta} Å is below the charge smearing {self.width} Å"
            )

    @property
    def tail_factor(self) -> float:
        """g = e^{κ²s²/2}: Gaussian charges screen as e^{−κr}/r times g at large r."""
        return math.exp(0.5 * (self.kappa * self.width) ** 2)

    # ---------------------------------------------------------------- real space
    def value(self, r: Tensor) -> Tensor:
        """v(r), r > 0."""
        if self.smearing is not None:
            point = torch.exp(-self.kappa * r) / r if self.kappa else 1.0 / r
            return self.tail_factor * (point - self._point_short_range(r, self.smearing))
        if self.kappa:
            return torch.exp(-self.kappa * r) / r
        return 1.0 / r

    def short_range(self, r: Tensor, eta: float) -> Tensor:
        """v_sr(r; η) = v(r) − v_lr(r; η), r > 0."""
        value = self._point_short_range(r, eta)
        if self.smearing is not None:
            value = self.tail_factor * (value - self._point_short_range(r, self.smearing))
        return value

    def short_range_vanishes(self, eta: float) -> bool:
        return self.smearing is not None and abs(eta - self.smearing) <= 1e-12 * eta

    def _point_short_range(self, r: Tensor, eta: float) -> Tensor:
        """u_sr(r; η) (module docstring)."""
        if not self.kappa:
            return torch.erfc(r / (math.sqrt(2.0) * eta)) / r
        c = self.kappa * eta / math.sqrt(2.0)
        x = r / (math.sqrt(2.0) * eta)
        kr = self.kappa * r
        return (_exp_erfc(-kr, x - c) + _exp_erfc(kr, x + c)) / (2.0 * r)

    # ---------------------------------------------------------------- reciprocal space
    def fourier(self, k_sq: Tensor, eta: float) -> Tensor:
        """ṽ_lr(k; η); 0 at k = 0 for Coulomb (the neutralising background)."""
        kappa_sq = self.kappa**2
        damped = 4.0 * math.pi * self.tail_factor * torch.exp(-0.5 * eta * eta * (k_sq + kappa_sq))
        if self.kappa:
            return damped / (k_sq + kappa_sq)
        zero = k_sq == 0
        return torch.where(zero, 0.0, damped / torch.where(zero, 1.0, k_sq))

    def self_value(self, eta: float) -> float:
        """v_lr(0; η): a charge's interaction with its own Gaussian, removed from k-space."""
        c = self.kappa * eta / math.sqrt(2.0)
        value = math.sqrt(2.0 / math.pi) * math.exp(-c * c) / eta
        if self.kappa:
            value -= self.kappa * math.erfc(c)
        return self.tail_factor * value

    def background(self, eta: float) -> float:
        """β with E_background = −k_e β Q² / V (0 for Yukawa: nothing diverges)."""
        if self.kappa:
            return 0.0
        return math.pi * (eta * eta - self.width**2)

    def default_split(self, cutoff: float, accuracy: float) -> float:
        """η for which v_sr is below ``accuracy`` (relative) beyond ``cutoff``, never < s."""
        return max(cutoff / (math.sqrt(2.0) * decay_arguments(accuracy)), self.width)


def decay_arguments(accuracy: float) -> float:
    """x with e^{−x²} = accuracy: erfc(x) and e^{−k²η²/2} both fall to ~accuracy there."""
    if not 0 < accuracy < 1:
        raise ValueError(f"accuracy must be in (0, 1), got {accuracy}")
    return math.sqrt(-math.log(accuracy))
