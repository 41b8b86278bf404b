"""Dielectric and piezoelectric tensors of a crystal from a model's dipole / polarisability.

Everything is a derivative of E(r, ε, ℰ) (positions r, homogeneous strain ε, field ℰ) at
ε = ℰ = 0, by autograd (:mod:`equipot.physics.fields`). With Ω the cell volume, ε₀ the vacuum
permittivity, Z*_i[a, b] = ∂μ_a/∂r_ib, Φ the Γ-point force constants (the periodic cell's
Hessian) and Φ⁺ its pseudo-inverse without the three translations:

    ε∞       = 1 + α / (ε₀ Ω)                                      (clamped ions)
    ε₀       = ε∞ + Zᵀ Φ⁺ Z / (ε₀ Ω) = ε∞ + Σ_m Z̃_m Z̃_mᵀ / (ω_m² ε₀ Ω)   (relaxed ions)
    Z̃_m[a]   = Σ_ib Z*_i[a, b] e_m(ib) / √M_i                      (mode effective charge)
    e_a,jk   = (1/Ω) ∂μ_a/∂ε_jk − ½(δ_aj P_k + δ_ak P_j)            (clamped ion, proper)
             + (1/Ω) Σ_ib Z*_i[a, b] (Φ⁺ Λ)_ib,jk,   Λ_ib,jk = ∂F_ib/∂ε_jk   (internal strain)

Z is the (3N, 3) matrix Z[(i b), a]; e_m and ω_m² are the mass-weighted Γ modes. P = μ/Ω is
defined only up to a polarisation quantum; the correction term makes e independent of that
choice (Vanderbilt's proper piezoelectric tensor: shifting an atom by a lattice vector
leaves it unchanged). Units: ε dimensionless, e in e/Å² (× 16.02 for C/m²).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms, units

from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.model.energy_model import EnergyModel
from equipot.physics.derivatives import differentiable_inputs, hessian_from_graph
from equipot.physics.fields import EPSILON_0, couples_to_field, dipole_derivative
from equipot.properties.hessians import OMEGA_TO_THZ, THZ_TO_CM, internal_basis, signed_sqrt

E_PER_A2_TO_C_PER_M2 = units._e / 1e-20  # 1 e/Å² in C/m²


@dataclass
class DielectricResult:
    volume: float  # Å³
    dipole: np.ndarray  # (3,) e·Å of the cell as given
    polarizability: np.ndarray  # (3, 3) e·Å²/V
    born_charges: np.ndarray  # (N, 3, 3) e
    epsilon_inf: np.ndarray  # (3, 3)
    epsilon_0: np.ndarray  # (3, 3)
    frequencies_cm: np.ndarray  # (M,) Γ modes without translations (negative: imaginary)
    mode_charges: np.ndarray  # (M, 3) Z̃_m, e/√amu
    mode_epsilon: np.ndarray  # (M, 3, 3) contribution of each mode to ε₀ − ε∞
    piezo_clamped: np.ndarray  # (3, 3, 3) e/Å², proper, clamped ions
    piezo: np.ndarray  # (3, 3, 3) e/Å², relaxed ions
    force_constants: np.ndarray  # (3N, 3N) eV/Å²

    def as_dict(self) -> dict:
        out = {
            k: np.asarray(v).tolist() for k, v in self.__dict__.items() if k != "force_constants"
        }
        out["piezo_C_per_m2"] = (self.piezo * E_PER_A2_TO_C_PER_M2).tolist()
        out["piezo_voigt_C_per_m2"] = voigt_piezo(self.piezo * E_PER_A2_TO_C_PER_M2).tolist()
        return out


VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def voigt_piezo(e: np.ndarray) -> np.ndarray:
    """e_a,jk (3, 3, 3) → the (3, 6) matrix e_a,J in Voigt order xx yy zz yz xz xy."""
    return np.stack([e[:, j, k] for j, k in VOIGT], axis=1)


def derivatives(model: EnergyModel, atoms: Atoms) -> dict[str, np.ndarray]:
    """μ, α = ∂μ/∂ℰ, Z* = ∂μ/∂r, ∂μ/∂ε (clamped), Λ = ∂F/∂ε and Φ of one periodic cell."""
    if not couples_to_field(model):
        raise ValueError("dielectric properties need a model with a 'dipole' head")
    frozen = frozen_copy(model, torch.float64, "cpu")
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    with torch.enable_grad():
        strained, (positions, strain), _ = differentiable_inputs(graph, True, True)
        efield = graph.efield.clone().requires_grad_(True)
        out = frozen(strained.replace(efield=efield))
        energy = out.energy.sum()
        d_field, d_pos, d_strain = torch.autograd.grad(
            energy, [efield, positions, strain], create_graph=True, allow_unused=True
        )
        dipole = -d_field
        rows = [
            torch.autograd.grad(
                dipole[:, a].sum(), [efield, strain], retain_graph=True, allow_unused=True
            )
            for a in range(3)
        ]
        z = dipole_derivative(dipole, positions, create_graph=False)
        sym_strain = 0.5 * (d_strain + d_strain.transpose(1, 2))[0]  # ∂E/∂ε
        lam = torch.stack(
            [
                -torch.autograd.grad(sym_strain[j, k], positions, retain_graph=True)[0]
                for j, k in VOIGT
            ],
            dim=-1,
        )  # (N, 3, 6): ∂F_ib/∂ε_J
        hessian = hessian_from_graph(frozen, graph)
    del d_pos
    zeros = torch.zeros(1, 3, dtype=torch.float64)
    alpha = torch.stack([r[0] if r[0] is not None else zeros for r in rows], dim=1)[0]
    dmu_de = torch.stack([r[1][0] if r[1] is not None else torch.zeros(3, 3) for r in rows])
    dmu_de = 0.5 * (dmu_de + dmu_de.transpose(1, 2))
    as_np = lambda t: t.detach().double().numpy()  # noqa: E731
    return {
        "dipole": as_np(dipole[0]),
        "polarizability": as_np(alpha),
        "born_charges": as_np(z),
        "dipole_strain": as_np(dmu_de),  # (3, 3, 3): ∂μ_a/∂ε_jk
        "internal_strain": as_np(lam).reshape(-1, 6),  # (3N, 6)
        "force_constants": as_np(0.5 * (hessian + hessian.T)),
    }


def dielectric(model: EnergyModel, atoms: Atoms, *, tolerance: float = 1e-6) -> DielectricResult:
    """ε∞, ε₀, Born charges, Γ modes and piezoelectric tensors of a 3D-periodic cell."""
    if not atoms.pbc.all():
        raise ValueError("dielectric tensors need a structure periodic in all 3 directions")
    d = derivatives(model, atoms)
    volume = abs(float(np.linalg.det(atoms.cell.array)))
    scale = 1.0 / (EPSILON_0 * volume)
    eye = np.eye(3)
    eps_inf = eye + scale * d["polarizability"]
    n = len(atoms)
    zmat = d["born_charges"].transpose(0, 2, 1).reshape(3 * n, 3)  # Z[(i b), a]
    masses = atoms.get_masses()
    inv_sqrt = 1.0 / np.sqrt(np.repeat(masses, 3))
    basis = internal_basis(atoms, rotations=False)  # mass-weighted, translations removed
    dyn = basis.T @ (d["force_constants"] * inv_sqrt[:, None] * inv_sqrt[None, :]) @ basis
    lam, vectors = np.linalg.eigh(0.5 * (dyn + dyn.T))
    modes = basis @ vectors  # (3N, M) mass-weighted eigenvectors e_m
    mode_charges = (zmat * inv_sqrt[:, None]).T @ modes  # (3, M)
    small = np.abs(lam) < tolerance * max(np.abs(lam).max(initial=0.0), 1e-12)
    if np.any(lam < 0) and not np.all(small[lam < 0]):
        warnings.warn(
            "imaginary Γ modes: ε₀ and the relaxed-ion piezoelectric tensor are not "
            "meaningful for an unstable structure",
            stacklevel=2,
        )
    inv = np.where(small, 0.0, 1.0 / np.where(small, 1.0, lam))
    mode_eps = scale * np.einsum("am,bm,m->mab", mode_charges, mode_charges, inv)
    eps_0 = eps_inf + mode_eps.sum(0)
    # relaxed-ion piezoelectric tensor: internal strain u = Φ⁺ Λ (mass-weighting cancels)
    phi_pinv = (modes * inv) @ modes.T * inv_sqrt[:, None] * inv_sqrt[None, :]
    du_de = phi_pinv @ d["internal_strain"]  # (3N, 6)
    polarization = d["dipole"] / volume
    clamped = d["dipole_strain"] / volume
    clamped = clamped - 0.5 * (
        np.einsum("aj,k->ajk", eye, polarization) + np.einsum("ak,j->ajk", eye, polarization)
    )
    ionic6 = zmat.T @ du_de / volume  # (3, 6)
    ionic = np.zeros((3, 3, 3))
    for col, (j, k) in enumerate(VOIGT):
        ionic[:, j, k] = ionic[:, k, j] = ionic6[:, col]
    return DielectricResult(
        volume=volume,
        dipole=d["dipole"],
        polarizability=d["polarizability"],
        born_charges=d["born_charges"],
        epsilon_inf=eps_inf,
        epsilon_0=eps_0,
        frequencies_cm=signed_sqrt(lam) * OMEGA_TO_THZ * THZ_TO_CM,
        mode_charges=mode_charges.T,
        mode_epsilon=mode_eps,
        piezo_clamped=clamped,
        piezo=clamped + ionic,
        force_constants=d["force_constants"],
    )
