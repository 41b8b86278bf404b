"""Flags for a scan that has a hole or erratic forces.

* **hole**: the energy falls more than ``hole_threshold`` below the starting structure's
  (a scan that starts in a minimum should not find anything much deeper; if it does, either
  the model has a hole or the start was not the lowest minimum: both worth a look).
* **erratic forces**: the generalised force f = −dE/dq flips sign at two consecutive points
  (a minimum and a maximum within two grid steps), or the energy change between neighbours
  disagrees with the trapezoidal integral of f, ΔE ≈ −½ (f_k + f_k+1) Δq, by more than half
  and more than ``energy_tolerance``: the surface is rough on the scale of the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ScanCheck:
    drop: float  # E_start − min E, eV (positive: something lies below the start)
    hole: bool
    sign_flips: list[int] = field(default_factory=list)  # points where f flips twice
    inconsistent: list[int] = field(default_factory=list)  # intervals k → k+1
    messages: list[str] = field(default_factory=list)

    @property
    def erratic(self) -> bool:
        return bool(self.sign_flips or self.inconsistent)

    @property
    def ok(self) -> bool:
        return not (self.hole or self.erratic)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "hole": self.hole,
            "erratic": self.erratic,
            "drop_below_start_eV": self.drop,
            "sign_flip_points": self.sign_flips,
            "inconsistent_intervals": self.inconsistent,
            "messages": self.messages,
        }


def check_scan(
    values: np.ndarray,
    energies: np.ndarray,
    generalized_forces: np.ndarray,
    *,
    hole_threshold: float = 0.25,
    force_noise: float = 1e-3,
    energy_tolerance: float = 0.05,
    unit: str = "",
) -> ScanCheck:
    """Check one scan (values q_k, energies E_k in eV, f_k = −dE/dq)."""
    q, e, f = (np.asarray(x, dtype=float) for x in (values, energies, generalized_forces))
    if not len(q) == len(e) == len(f) or len(q) < 2:
        raise ValueError("a scan needs ≥ 2 points with one energy and one force each")
    drop = float(e[0] - e.min())
    check = ScanCheck(drop=drop, hole=drop > hole_threshold)
    if check.hole:
        k = int(np.argmin(e))
        check.messages.append(
            f"hole: the energy at {q[k]:.3g} {unit} is {drop:.3f} eV below the start "
            f"(threshold {hole_threshold} eV)"
        )
    sign = np.where(np.abs(f) > force_noise, np.sign(f), 0.0)
    for k in range(1, len(q) - 1):
        if sign[k] and sign[k - 1] == sign[k + 1] == -sign[k]:
            check.sign_flips.append(k)
    if check.sign_flips:
        where = ", ".join(f"{q[k]:.3g}" for k in check.sign_flips[:5])
        check.messages.append(f"erratic: the force along the scan flips sign twice at {where}")
    de = np.diff(e)
    trapezoid = -0.5 * (f[1:] + f[:-1]) * np.diff(q)
    bad = (np.abs(de - trapezoid) > energy_tolerance) & (
        np.abs(de - trapezoid) > 0.5 * np.maximum(np.abs(de), np.abs(trapezoid))
    )
    check.inconsistent = [int(k) for k in np.flatnonzero(bad)]
    if check.inconsistent:
        where = ", ".join(f"{q[k]:.3g}–{q[k + 1]:.3g}" for k in check.inconsistent[:5])
        check.messages.append(
            f"erratic: energy changes and forces disagree between {where} {unit} "
            "(rough on the scale of the grid; refine the step to see)"
        )
    return check
