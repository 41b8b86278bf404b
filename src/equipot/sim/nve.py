"""Microcanonical MD: velocity Verlet, one force evaluation per step.

    p(t+½) = p(t) + ½Δt F(t)
    r(t+1) = r(t) + Δt p(t+½)/m
    p(t+1) = p(t+½) + ½Δt F(t+1)

Symplectic and time reversible, so the total energy does not drift (it fluctuates by
O(Δt²)).
"""

from __future__ import annotations

from equipot.sim.potentials import Potential, evaluate
from equipot.sim.state import FS, SimState


def init(state: SimState, potential: Potential) -> SimState:
    """Evaluate the forces the first half-kick needs (momenta of fixed atoms zeroed)."""
    state = state.replace(momenta=state.momenta.masked_fill(state.fixed.unsqueeze(1), 0.0))
    return evaluate(state, potential)


def kick(state: SimState, h: float) -> SimState:
    """p ← p + h F (B)."""
    return state.replace(momenta=state.momenta + h * state.forces)


def drift(state: SimState, h: float) -> SimState:
    """r ← r + h p/m (A)."""
    return state.replace(positions=state.positions + h * state.momenta / state.masses[:, None])


def step(state: SimState, potential: Potential, *, dt: float) -> SimState:
    """One velocity-Verlet step of ``dt`` fs."""
    h = dt * FS
    state = drift(kick(state, 0.5 * h), h)
    return kick(evaluate(state, potential), 0.5 * h)
