"""A uniform applied electric field for MD: static or oscillating.

    ℰ(t) = ℰ_0 cos(2π f t + φ)     (f = 0: the static field ℰ_0)

in V/Å, t in fs, f in THz (1 THz ≙ 33.36 cm⁻¹). A model with a dipole (and polarizability)
head then evolves on E(r; ℰ(t)) = E(r) − μ·ℰ(t) − ½ ℰ(t)·α·ℰ(t): the forces include the
Born-charge term Z*ᵀℰ. In a static field the total energy E(r; ℰ) + kinetic is conserved;
an oscillating field does work on the system.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ElectricField:
    amplitude: tuple[float, float, float]  # ℰ_0, V/Å
    frequency_thz: float = 0.0
    phase: float = 0.0  # rad

    def __post_init__(self):
        amplitude = np.asarray(self.amplitude, dtype=np.float64)
        if amplitude.shape != (3,) or not np.isfinite(amplitude).all():
            raise ValueError(f"the field needs three finite components (V/Å), got {self.amplitude}")
        if not math.isfinite(self.frequency_thz) or self.frequency_thz < 0:
            raise ValueError(f"field frequency must be ≥ 0 THz, got {self.frequency_thz}")

    def at(self, time_fs: float) -> np.ndarray:
        """ℰ(t) (3,) in V/Å."""
        factor = math.cos(2 * math.pi * self.frequency_thz * 1e-3 * time_fs + self.phase)
        return np.asarray(self.amplitude, dtype=np.float64) * (
            factor if self.frequency_thz else 1.0
        )
