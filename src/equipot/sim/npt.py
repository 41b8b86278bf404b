"""Isothermal–isobaric MD for 3D-periodic cells: Langevin (BAOAB) thermostat and isotropic
stochastic cell rescaling (C-rescale, Bernetti & Bussi 2020) driven by the model's stress.

The barostat is a first-order stochastic equation for ε = ln V (Itô):

    dε = −(β_T/τ_p)(P₀ − P) dt + √(2 k_BT β_T / (V τ_p)) dW,
    P = 2K/(3V) − tr(σ)/3       (instantaneous pressure; σ the stress, ASE's sign)

and every step scales positions and cell by μ = exp(dε/3) and momenta by 1/μ. With positions
and momenta scaled together the phase-space Jacobian of the move is V (from dV = V dε), the
stationary density of ε is ∝ V·exp(−β(PV + F(V))), and because the noise variance ∝ 1/V
its Itô drift needs no extra term: this samples the NPT ensemble exactly in the limit of
small Δt. β_T = 1/B is the compressibility the coupling assumes: volume relaxes on a time
≈ τ_p·B_guess/B_true, and the sampled distribution does not depend on either.

Step: B A O A (Langevin), the cell move with the stress of the last force evaluation, the
force (and stress) evaluation, B. One model call per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from equipot.sim.langevin import LangevinState, thermalize
from equipot.sim.langevin import init as langevin_init
from equipot.sim.nve import drift, kick
from equipot.sim.potentials import Potential, evaluate
from equipot.sim.state import FS, GPA, KB, SimState, extend


@dataclass(kw_only=True, eq=False)
class NPTState(LangevinState):
    pass


def init(state: SimState, potential: Potential, *, seed: int | None = None) -> NPTState:
    if not bool(state.pbc.all()):
        raise ValueError("NPT needs structures periodic in all three directions")
    if bool(state.fixed.any()):
        raise ValueError("NPT with fixed atoms is not supported (the cell moves them)")
    base = langevin_init(state, potential, seed=seed)
    base = evaluate(base, potential, stress=True)
    fields = {f: getattr(base, f) for f in ("generator",)}
    return extend(base, NPTState, **fields)


def instantaneous_pressure(state: SimState) -> Tensor:
    """Instantaneous pressure P = 2K/(3V) − tr(σ)/3 per system, eV/Å³."""
    volume = state.volume()
    virial_part = -torch.diagonal(state.stress, dim1=1, dim2=2).sum(1) / 3.0
    return 2.0 * state.kinetic_energy() / (3.0 * volume) + virial_part


def rescale_cell(
    state: NPTState, h: float, temperature: float, target: float, tau_p: float, beta_t: float
) -> NPTState:
    """The C-rescale move over a time ``h`` (ASE units; pressures eV/Å³, β_T Å³/eV)."""
    kt = KB * temperature
    volume = state.volume()
    noise = torch.randn(
        state.n_systems, generator=state.generator, dtype=state.dtype, device=state.device
    )
    drift_ = -(beta_t / tau_p) * (target - instantaneous_pressure(state)) * h
    d_eps = drift_ + torch.sqrt(2.0 * kt * beta_t * h / (volume * tau_p)) * noise
    mu = torch.exp(d_eps / 3.0)
    mu_atom = mu[state.system_idx].unsqueeze(1)
    return state.replace(
        positions=state.positions * mu_atom,
        momenta=state.momenta / mu_atom,
        cell=state.cell * mu[:, None, None],
    )


def step(
    state: NPTState,
    potential: Potential,
    *,
    dt: float,
    temperature: float,
    pressure: float,
    tau: float = 100.0,
    barostat_tau: float = 1000.0,
    bulk_modulus: float = 100.0,
) -> NPTState:
    """One step of ``dt`` fs at ``temperature`` K and ``pressure`` GPa; thermostat time
    ``tau`` fs, barostat time ``barostat_tau`` fs, assumed ``bulk_modulus`` GPa."""
    h = dt * FS
    if not math.isfinite(bulk_modulus) or bulk_modulus <= 0:
        raise ValueError(f"bulk_modulus must be a positive number of GPa, got {bulk_modulus}")
    state = drift(kick(state, 0.5 * h), 0.5 * h)
    state = drift(thermalize(state, h, temperature, tau * FS), 0.5 * h)
    state = rescale_cell(
        state, h, temperature, pressure * GPA, barostat_tau * FS, 1.0 / (bulk_modulus * GPA)
    )
    return kick(evaluate(state, potential, stress=True), 0.5 * h)
