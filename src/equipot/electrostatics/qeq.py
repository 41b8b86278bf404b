"""Charge equilibration (Qeq; Rappé & Goddard 1991, as in 4G-HDNNP): the charges that
minimise a second-order energy of Gaussian charges at a fixed total charge Q.

For one system with electronegativities χ_i (eV/e) and hardnesses J_i > 0 (eV/e²),

    E_Qeq(q) = Σ_i (χ_i q_i + ½ J_i q_i²) + ½ k_e qᵀ (C + v(0) 1) q,     Σ_i q_i = Q

with C the Coulomb matrix of the kernel (φ = C q: pairs and periodic images, Ewald for
periodic cells) and v(0) = v_lr(0; s) the interaction of a Gaussian charge with itself.
That matrix is the energy of a Gaussian charge density, positive definite, so with J > 0
the minimum is unique: the bordered linear system

    [A  1] [q]   [−χ]
    [1ᵀ 0] [λ] = [ Q ],      A = diag(J) + k_e (C + v(0) 1)

gives q exactly (Σq = Q to rounding) and λ, the chemical potential. It is solved densely
(O(n³) per system; meant for molecules, clusters and cells up to ~10³ atoms) and
differentiated by autograd, so forces, stress and Hessians include ∂q/∂r.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from equipot.electrostatics.energy import CoulombOptions, coulomb_potentials
from equipot.electrostatics.kernels import COULOMB_CONSTANT


def coulomb_matrix(positions: Tensor, cell: Tensor, pbc: Tensor, options: CoulombOptions) -> Tensor:
    """C (n, n) in 1/Å for one system: φ_i = Σ_j C_ij q_j (Ewald sums for periodic cells)."""
    n = len(positions)
    method = "ewald" if bool(pbc.all()) and options.method in ("auto", "pme") else options.method
    eye = torch.eye(n, dtype=positions.dtype, device=positions.device)
    return coulomb_potentials(
        positions, eye, cell.unsqueeze(0), pbc.unsqueeze(0), [n], replace(options, method=method)
    )


def equilibrate(
    positions: Tensor,
    cell: Tensor,
    pbc: Tensor,
    n_atoms: list[int],
    electronegativity: Tensor,
    hardness: Tensor,
    total_charge: Tensor,
    options: CoulombOptions,
) -> tuple[Tensor, Tensor]:
    """Charges q (N,) and atomic energies (N,) eV: χ_i q_i + ½ J_i q_i² + ½ k_e q_i (A q)_i
    terms of E_Qeq at its constrained minimum, for every system of a batch."""
    if options.smearing is None:
        raise ValueError("charge equilibration needs Gaussian charges (a smearing > 0)")
    self_term = options.kernel.self_value(options.smearing)
    charges, energies = [], []
    start = 0
    for s, n in enumerate(n_atoms):
        rows = slice(start, start + n)
        start += n
        coulomb = COULOMB_CONSTANT * (
            coulomb_matrix(positions[rows], cell[s], pbc[s], options)
            + self_term * torch.eye(n, dtype=positions.dtype, device=positions.device)
        )
        matrix = coulomb + torch.diag(hardness[rows])
        ones = torch.ones(n, 1, dtype=positions.dtype, device=positions.device)
        bordered = torch.cat(
            [torch.cat([matrix, ones], 1), torch.cat([ones.T, ones.new_zeros(1, 1)], 1)]
        )
        rhs = torch.cat([-electronegativity[rows], total_charge[s].reshape(1)])
        q = torch.linalg.solve(bordered, rhs)[:n]
        charges.append(q)
        energies.append(
            electronegativity[rows] * q + 0.5 * hardness[rows] * q * q + 0.5 * q * (coulomb @ q)
        )
    return torch.cat(charges), torch.cat(energies)
