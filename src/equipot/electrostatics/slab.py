"""Slabs (periodic along two cell vectors): 3D Ewald sums in a cell with vacuum, with the
Yeh–Berkowitz correction for the slab's dipole (J. Chem. Phys. 111, 3155 (1999)) and the
matching terms for a net charge (Ballenegger, Arnold & Cerdà, J. Chem. Phys. 131, 094107).

With n the unit normal of the periodic plane, z_i = r_i·n, L = c·n the cell height along n
(c the open direction's cell vector), M = Σ q_i z_i, M₂ = Σ q_i z_i² and Q = Σ q_i,

    E_slab = (2π k_e / V) [M² − Q M₂ − Q² L²/12]
    φ_i^slab = ∂(E_slab/k_e)/∂q_i = (4π/V) [z_i M − ½ (M₂ + Q z_i²) − Q L²/12]

removes the interaction with the slab's periodic images along n to leading order in the
vacuum (the vacuum should be at least as thick as the slab). The open cell vector must be
perpendicular to the periodic plane. Only for Coulomb: screened (Yukawa) interactions
need no correction once the vacuum is several 1/κ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def open_axis(pbc: Tensor, cell: Tensor, system: int) -> int:
    """The open direction of a slab, checked: its cell vector ⟂ the periodic plane."""
    axis = int(torch.nonzero(~pbc)[0])
    a, b = (cell[k].detach() for k in range(3) if k != axis)
    normal = torch.linalg.cross(a, b)
    c = cell[axis].detach()
    cosine = float(torch.dot(normal, c) / (normal.norm() * c.norm()).clamp_min(1e-300))
    if abs(abs(cosine) - 1.0) > 1e-8:
        raise ValueError(
            f"system {system} is a slab whose open cell vector {c.tolist()} is not "
            "perpendicular to its periodic plane (needed for the slab correction)"
        )
    return axis


def slab_potential(positions: Tensor, charges: Tensor, cell: Tensor, axis: int) -> Tensor:
    """φ_i^slab (N,) or (N, M) in e/Å (module docstring)."""
    a, b = (cell[k] for k in range(3) if k != axis)
    normal = torch.linalg.cross(a, b)
    volume = torch.abs(torch.dot(normal, cell[axis]))
    normal = normal / torch.linalg.vector_norm(normal)
    z = positions @ normal
    height = torch.abs(cell[axis] @ normal)
    zz = z if charges.dim() == 1 else z.unsqueeze(1)
    moment = (charges * zz).sum(0)
    second = (charges * zz * zz).sum(0)
    total = charges.sum(0)
    bracket = zz * moment - 0.5 * (second + total * zz * zz) - total * height**2 / 12.0
    return 4.0 * math.pi / volume * bracket
