"""Canonical MD with a Langevin thermostat, integrated with the BAOAB splitting
(Leimkuhler & Matthews 2013):

    B: p ← p + ½Δt F          A: r ← r + ½Δt p/m
    O: p ← c₁ p + √(1 − c₁²) √(m k_B T) ξ,   c₁ = exp(−Δt/τ),  ξ ~ N(0, 1)
    A, then the force evaluation, then B.

The O step is an exact solution of the Ornstein–Uhlenbeck process, so the scheme samples
the canonical distribution of positions with an error of O(Δt²) that is unusually small
(exact for harmonic potentials). The friction is 1/τ. The thermostat acts on every degree of
freedom, the centre of mass too, so ``dof`` counts all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from equipot.sim.nve import drift, kick
from equipot.sim.potentials import Potential, evaluate
from equipot.sim.state import FS, KB, SimState, count_dof, extend, new_seed


@dataclass(kw_only=True, eq=False)
class LangevinState(SimState):
    generator: torch.Generator


def init(state: SimState, potential: Potential, *, seed: int | None = None) -> LangevinState:
    state = state.replace(
        momenta=state.momenta.masked_fill(state.fixed.unsqueeze(1), 0.0),
        dof=count_dof(state, com_conserved=False),
    )
    generator = torch.Generator(device=state.device)
    generator.manual_seed(new_seed() if seed is None else seed)
    return extend(evaluate(state, potential), LangevinState, generator=generator)


def thermalize(state: LangevinState, h: float, temperature: float, tau: float) -> LangevinState:
    """The O step over a time ``h`` (ASE units) with relaxation time ``tau`` (ASE units)."""
    c1 = math.exp(-h / tau)
    noise = torch.randn(
        state.momenta.shape, generator=state.generator, dtype=state.dtype, device=state.device
    )
    sigma = torch.sqrt(state.masses * (KB * temperature * (1.0 - c1 * c1))).unsqueeze(1)
    kick_ = (sigma * noise).masked_fill(state.fixed.unsqueeze(1), 0.0)
    return state.replace(momenta=c1 * state.momenta + kick_)


def step(
    state: LangevinState,
    potential: Potential,
    *,
    dt: float,
    temperature: float,
    tau: float = 100.0,
) -> LangevinState:
    """One BAOAB step of ``dt`` fs at ``temperature`` K; friction 1/``tau`` (fs)."""
    h = dt * FS
    state = drift(kick(state, 0.5 * h), 0.5 * h)
    state = drift(thermalize(state, h, temperature, tau * FS), 0.5 * h)
    return kick(evaluate(state, potential), 0.5 * h)
