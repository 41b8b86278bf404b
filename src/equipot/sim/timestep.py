"""Automatic MD time step from the stiffest vibration (``equipot md --timestep auto``).

The squared angular frequencies are the eigenvalues λ of the mass-weighted Hessian
D = M^{-1/2} H M^{-1/2}. The largest, λ_max = ω_max², is found by Lanczos iteration using
only Hessian-vector products (D v = M^{-1/2} H (M^{-1/2} v), one double-backward pass of the
model each), so it costs O(k) model calls for k iterations and no (3N)² matrix.

Velocity Verlet is stable for ω_max Δt < 2 but resolves a vibration well only with ~20 steps
per period; the time step is

    Δt = 2π / (``steps_per_period`` · ω_max)         (default 20 steps per period)

i.e. Δt_max ∝ 1/√λ_max. For an O–H stretch (ω ≈ 3,700 cm⁻¹, period 9 fs) this gives 0.45 fs;
for Cu (ω_max ≈ 7.5 THz) about 6.7 fs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from equipot.sim.potentials import ModelPotential
from equipot.sim.state import FS, SimState

DEFAULT_STEPS_PER_PERIOD = 20.0


def largest_eigenvalue(
    matvec,
    n: int,
    *,
    iterations: int = 40,
    tol: float = 1e-10,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> float:
    """λ_max of a symmetric operator by Lanczos with full reorthogonalisation.

    Stops when the Ritz value changes by less than ``tol`` (relative) between iterations.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=dtype, device=device)
    basis = [q / q.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    previous = math.inf
    for k in range(min(iterations, n)):
        w = matvec(basis[k])
        alpha = float(w @ basis[k])
        alphas.append(alpha)
        stacked = torch.stack(basis)
        w = w - stacked.T @ (stacked @ w)  # full reorthogonalisation (twice is enough)
        w = w - stacked.T @ (stacked @ w)
        tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tri = tri + torch.diag(off, 1) + torch.diag(off, -1)
        ritz = float(torch.linalg.eigvalsh(tri)[-1])
        beta = float(w.norm())
        if abs(ritz - previous) <= tol * abs(ritz) or beta < 1e-12 * max(abs(ritz), 1.0):
            return ritz
        previous = ritz
        betas.append(beta)
        basis.append(w / beta)
    return previous


def max_frequency(potential: ModelPotential, state: SimState, **lanczos) -> Tensor:
    """ω_max (1/t, ASE units) of each system from its mass-weighted Hessian."""
    if not isinstance(potential, ModelPotential):
        raise ValueError("--timestep auto needs a model potential (Hessian-vector products)")
    out = []
    for s in range(state.n_systems):
        sel = state.system_idx == s
        sub = (
            state
            if state.n_systems == 1
            else state.replace(
                positions=state.positions[sel],
                momenta=state.momenta[sel],
                masses=state.masses[sel],
                atomic_numbers=state.atomic_numbers[sel],
                system_idx=torch.zeros(int(sel.sum()), dtype=torch.int64, device=state.device),
                fixed=state.fixed[sel],
                cell=state.cell[s : s + 1],
                pbc=state.pbc[s : s + 1],
                dof=state.dof[s : s + 1],
                energy=None,
                forces=None,
                stress=None,
            )
        )
        inv_sqrt_m = (sub.masses**-0.5).repeat_interleave(3)
        free = (~sub.fixed).repeat_interleave(3).to(sub.dtype)
        scale = inv_sqrt_m * free  # fixed atoms do not vibrate

        def matvec(v: Tensor, sub=sub, scale=scale) -> Tensor:
            hv = potential.hessian_vector_product(sub, (scale * v).view(-1, 3))
            return scale * hv.reshape(-1)

        lam = largest_eigenvalue(matvec, 3 * sub.n_atoms, dtype=state.dtype, **lanczos)
        out.append(math.sqrt(max(lam, 0.0)))
    return torch.tensor(out, dtype=torch.float64)


def wavenumber(omega: float) -> float:
    """Angular frequency in 1/t (ASE units) → wavenumber in cm⁻¹."""
    hertz = omega * FS * 1e15 / (2.0 * math.pi)
    return hertz / 2.99792458e10


def auto_timestep(
    potential: ModelPotential,
    state: SimState,
    *,
    steps_per_period: float = DEFAULT_STEPS_PER_PERIOD,
    tol: float = 1e-6,
    **lanczos,
) -> float:
    """Δt in fs: 2π/(steps_per_period · ω_max) for the stiffest system in the batch.

    Lanczos stops once λ_max changes by less than ``tol`` (relative) per iteration, typically
    after 10–20 Hessian-vector products (each about three times a force evaluation).
    """
    omega = float(max_frequency(potential, state, tol=tol, **lanczos).max())
    return timestep_from_frequency(omega, steps_per_period)


def timestep_from_frequency(
    omega: float, steps_per_period: float = DEFAULT_STEPS_PER_PERIOD
) -> float:
    """Δt (fs) = 2π/(steps_per_period · ω) for ω in 1/t (ASE units)."""
    if omega <= 0:
        raise ValueError("the Hessian has no positive eigenvalue: cannot pick a time step")
    return 2.0 * math.pi / (steps_per_period * omega) / FS
