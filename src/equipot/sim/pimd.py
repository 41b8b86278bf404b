"""Path-integral MD: ring polymers of P beads, normal-mode propagation, PILE-L thermostat
(Ceriotti, Parrinello, Markland & Manolopoulos 2010) and the centroid-virial estimator.

Every atom becomes P beads joined by harmonic springs; the ring-polymer Hamiltonian

    H_P = Σ_b [Σ_i p_ib²/2m_i + V(q_b)] + Σ_b Σ_i ½ m_i ω_P² |q_ib − q_i,b+1|²,   ω_P = P k_BT/ħ

sampled at the bead temperature P·T gives exact quantum statistics as P → ∞. The beads of
all systems form one batched :class:`SimState` with P·S systems (bead-major: bead b of system
s is system b·S + s), so one potential call evaluates every bead.

Integration (BAOAB with an exact free ring polymer in the A steps): B(½Δt) in bead
coordinates; then in the normal modes q̃ = Cᵀq (C the orthogonal real DFT of the ring, mode
frequencies ω_k = 2ω_P sin(πk/P)) the free-ring-polymer rotation over ½Δt, the PILE
Ornstein–Uhlenbeck step over Δt (friction γ_0 = 1/τ for the centroid, γ_k = 2λω_k for the
internal modes, λ = ½ by default), the rotation again; back to beads, forces, B(½Δt).

Estimators per physical system (3 per free atom in the first term):

    K_cv = 3N/(2β) − (1/2P) Σ_b Σ_i (q_ib − q̄_i)·F_ib,   V̄ = (1/P) Σ_b V(q_b),   E = K_cv + V̄
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from ase import units
from torch import Tensor

from equipot.sim.potentials import Potential, evaluate
from equipot.sim.state import FS, KB, SimState, count_dof, extend, maxwell_boltzmann, new_seed

HBAR = units._hbar * units.J * units.s  # ħ in eV·t


@dataclass(kw_only=True, eq=False)
class RingPolymerState(SimState):
    n_beads: int
    generator: torch.Generator


def normal_mode_matrix(n_beads: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthogonal C (P, P), column k the k-th normal mode of a ring: bead coordinates
    q = C q̃. Column 0 is the centroid mode 1/√P."""
    p = n_beads
    j = torch.arange(p, dtype=torch.float64)[:, None]
    k = torch.arange(p, dtype=torch.float64)[None, :]
    angle = 2.0 * math.pi * j * k / p
    c = torch.where(k < p / 2, math.sqrt(2.0 / p) * torch.cos(angle), 0.0)
    c = torch.where(k > p / 2, math.sqrt(2.0 / p) * torch.sin(angle), c)
    c[:, 0] = 1.0 / math.sqrt(p)
    if p % 2 == 0:
        c[:, p // 2] = (1.0 - 2.0 * (torch.arange(p) % 2)).double() / math.sqrt(p)
    return c.to(dtype)


def mode_frequencies(n_beads: int, temperature: float) -> Tensor:
    """ω_k = 2 ω_P sin(πk/P) in 1/t, with ω_P = P k_BT/ħ."""
    omega_p = n_beads * KB * temperature / HBAR
    k = torch.arange(n_beads, dtype=torch.float64)
    return 2.0 * omega_p * torch.sin(math.pi * k / n_beads)


def init(
    state: SimState,
    potential: Potential,
    *,
    n_beads: int,
    temperature: float,
    seed: int | None = None,
) -> RingPolymerState:
    """Replicate a classical state into ``n_beads`` beads with momenta at P·T."""
    if n_beads < 1:
        raise ValueError(f"the number of beads must be ≥ 1, got {n_beads}")
    p, s = n_beads, state.n_systems
    rep = lambda x: x.repeat(p, *([1] * (x.ndim - 1)))  # noqa: E731
    offsets = (torch.arange(p, device=state.device) * s).repeat_interleave(state.n_atoms)
    beads = state.replace(
        positions=rep(state.positions),
        momenta=rep(state.momenta),
        masses=rep(state.masses),
        atomic_numbers=rep(state.atomic_numbers),
        system_idx=rep(state.system_idx) + offsets,
        fixed=rep(state.fixed),
        cell=rep(state.cell),
        pbc=rep(state.pbc),
        dof=rep(state.dof),
        energy=None,
        forces=None,
        stress=None,
    )
    beads = beads.replace(dof=count_dof(beads, com_conserved=False))
    generator = torch.Generator(device=state.device)
    generator.manual_seed(new_seed() if seed is None else seed)
    beads = beads.replace(momenta=maxwell_boltzmann(beads, p * temperature, generator))
    beads = evaluate(beads, potential)
    return extend(beads, RingPolymerState, n_beads=p, generator=generator)


def step(
    state: RingPolymerState,
    potential: Potential,
    *,
    dt: float,
    temperature: float,
    tau: float = 100.0,
    pile_lambda: float = 0.5,
) -> RingPolymerState:
    """One step of ``dt`` fs at the physical ``temperature`` K (centroid friction 1/``tau``)."""
    h = dt * FS
    p = state.n_beads
    dtype, device = state.dtype, state.device
    c = normal_mode_matrix(p, dtype).to(device)
    omega = mode_frequencies(p, temperature).to(dtype=dtype, device=device)
    shape = (p, -1, 3)
    masses = state.masses.view(p, -1, 1)
    free = (~state.fixed).view(p, -1, 1).to(dtype)

    momenta = state.momenta + 0.5 * h * state.forces
    q = torch.einsum("jk,jnc->knc", c, state.positions.view(shape))
    pm = torch.einsum("jk,jnc->knc", c, momenta.view(shape))
    q, pm = _free_ring(q, pm, masses, omega, 0.5 * h)
    gamma = torch.cat([omega.new_tensor([1.0 / (tau * FS)]), 2.0 * pile_lambda * omega[1:]])
    c1 = torch.exp(-gamma * h).view(p, 1, 1)
    noise = torch.randn(pm.shape, generator=state.generator, dtype=dtype, device=device)
    sigma = torch.sqrt(masses * KB * p * temperature * (1.0 - c1 * c1))
    pm = c1 * pm + sigma * noise * free
    q, pm = _free_ring(q, pm, masses, omega, 0.5 * h)
    positions = torch.einsum("jk,knc->jnc", c, q).reshape(-1, 3)
    momenta = torch.einsum("jk,knc->jnc", c, pm).reshape(-1, 3)
    new = evaluate(state.replace(positions=positions, momenta=momenta), potential)
    return new.replace(momenta=new.momenta + 0.5 * h * new.forces)


def _free_ring(q: Tensor, p: Tensor, m: Tensor, omega: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """Exact evolution of the free ring polymer's normal modes over a time ``t``."""
    wt = (omega * t).view(-1, 1, 1)
    cos, sin = torch.cos(wt), torch.sin(wt)
    mw = m * omega.view(-1, 1, 1)
    # centroid (ω = 0): free flight; sin/ω → t
    sin_over_mw = torch.where(mw > 0, sin / torch.where(mw > 0, mw, 1.0), t / m)
    return cos * q + sin_over_mw * p, cos * p - mw * sin * q


def centroid(state: RingPolymerState) -> SimState:
    """The physical systems at the bead centroids (momenta: bead average)."""
    p = state.n_beads
    n = state.n_atoms // p
    s = state.n_systems // p
    return SimState(
        positions=state.positions.view(p, n, 3).mean(0),
        momenta=state.momenta.view(p, n, 3).mean(0),
        masses=state.masses[:n],
        atomic_numbers=state.atomic_numbers[:n],
        system_idx=state.system_idx[:n],
        fixed=state.fixed[:n],
        cell=state.cell[:s],
        pbc=state.pbc[:s],
        dof=state.dof[:s],
        energy=state.energy.view(p, s).mean(0) if state.energy is not None else None,
    )


def estimators(state: RingPolymerState, temperature: float) -> dict[str, Tensor]:
    """Per physical system (eV, K): ``kinetic`` (centroid virial K_cv), ``potential`` (V̄),
    ``total`` (K_cv + V̄) and ``temperature`` (bead kinetic temperature / P)."""
    p = state.n_beads
    n = state.n_atoms // p
    s = state.n_systems // p
    pos = state.positions.view(p, n, 3)
    dev = pos - pos.mean(0, keepdim=True)
    virial = (dev * state.forces.view(p, n, 3)).sum((0, 2))  # (n,)
    sys_idx = state.system_idx[:n]
    per_sys = lambda x: x.new_zeros(s).index_add_(0, sys_idx, x)  # noqa: E731
    n_free = per_sys((~state.fixed[:n]).to(state.dtype))
    kinetic = 1.5 * n_free * KB * temperature - per_sys(virial) / (2.0 * p)
    potential = state.energy.view(p, s).mean(0)
    bead_t = state.temperature().view(p, s).mean(0) / p
    return {
        "kinetic": kinetic,
        "potential": potential,
        "total": kinetic + potential,
        "temperature": bead_t,
    }
