"""Canonical MD with a Nosé–Hoover chain thermostat (Martyna, Klein & Tuckerman 1992), one
chain of length M per system, integrated as in Martyna, Tuckerman, Tobias & Klein (1996):

    step = chain(½Δt) · velocity Verlet(Δt) · chain(½Δt)

The chain propagator is a Trotter factorisation with Suzuki–Yoshida weights w_k (order 3 or
5) and ``n_chain`` sub-steps. With thermostat momenta ξ_j, masses Q_j, positions η_j, the
g = ``dof`` degrees of freedom and K the kinetic energy:

    G_1 = 2K − g k_BT,    G_j = ξ_{j−1}²/Q_{j−1} − k_BT,    dξ_j/dt = G_j − ξ_j ξ_{j+1}/Q_{j+1}
    dp/dt = −(ξ_1/Q_1) p,   dη_j/dt = ξ_j/Q_j,   Q_1 = g k_BT τ²,   Q_{j>1} = k_BT τ²

The conserved quantity (checked in tests) is

    H̃ = E_pot + K + Σ_j ξ_j²/2Q_j + g k_BT η_1 + k_BT Σ_{j>1} η_j.

The chain variables are a handful of numbers per system, so they live in float64 numpy
arrays (far cheaper than tiny torch operations); only the momentum scaling touches tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from equipot.sim.nve import drift, kick
from equipot.sim.potentials import Potential, evaluate
from equipot.sim.state import FS, KB, SimState, extend

_SUZUKI_YOSHIDA = {
    1: (1.0,),
    3: (1.0 / (2.0 - 2.0 ** (1.0 / 3.0)),) * 2,
    5: (1.0 / (4.0 - 4.0 ** (1.0 / 3.0)),) * 4,
}


def _weights(order: int) -> tuple[float, ...]:
    if order not in _SUZUKI_YOSHIDA:
        raise ValueError(f"Suzuki–Yoshida order must be 1, 3 or 5, got {order}")
    outer = _SUZUKI_YOSHIDA[order]
    if order == 1:
        return outer
    middle = 1.0 - sum(outer)
    half = len(outer) // 2
    return (*outer[:half], middle, *outer[half:])


@dataclass(kw_only=True, eq=False)
class NoseHooverState(SimState):
    eta: np.ndarray  # (S, M) thermostat positions η_j
    xi: np.ndarray  # (S, M) thermostat momenta ξ_j, eV·t
    q: np.ndarray  # (S, M) thermostat masses Q_j, eV·t²


def init(
    state: SimState,
    potential: Potential,
    *,
    temperature: float,
    tau: float = 100.0,
    chain_length: int = 3,
) -> NoseHooverState:
    """Chain masses from the target ``temperature`` (K) and period ``tau`` (fs)."""
    if chain_length < 1:
        raise ValueError(f"chain_length must be ≥ 1, got {chain_length}")
    state = state.replace(momenta=state.momenta.masked_fill(state.fixed.unsqueeze(1), 0.0))
    kt = KB * temperature
    t2 = (tau * FS) ** 2
    dof = state.dof.detach().cpu().double().numpy()
    q = np.full((state.n_systems, chain_length), kt * t2)
    q[:, 0] = np.maximum(dof, 1.0) * kt * t2
    zeros = np.zeros_like(q)
    return extend(evaluate(state, potential), NoseHooverState, eta=zeros, xi=zeros.copy(), q=q)


def _chain(
    state: NoseHooverState, h: float, kt: float, n_chain: int, weights: tuple[float, ...]
) -> NoseHooverState:
    """Propagate the chains and scale the momenta over a time ``h`` (ASE units)."""
    eta, xi, q = state.eta.copy(), state.xi.copy(), state.q
    dof = state.dof.detach().cpu().double().numpy()
    kin2 = 2.0 * state.kinetic_energy().detach().cpu().double().numpy()  # 2K per system
    scale_total = np.ones(len(dof))
    m = q.shape[1]

    def force(j: int) -> np.ndarray:
        if j == 0:
            return kin2 - dof * kt
        return xi[:, j - 1] ** 2 / q[:, j - 1] - kt

    for _ in range(n_chain):
        for w in weights:
            d = w * h / n_chain
            xi[:, m - 1] += 0.5 * d * force(m - 1)
            for j in range(m - 2, -1, -1):
                damp = np.exp(-0.25 * d * xi[:, j + 1] / q[:, j + 1])
                xi[:, j] = (xi[:, j] * damp + 0.5 * d * force(j)) * damp
            scale = np.exp(-d * xi[:, 0] / q[:, 0])
            scale_total *= scale
            kin2 *= scale * scale
            eta += d * xi / q
            for j in range(m - 1):
                damp = np.exp(-0.25 * d * xi[:, j + 1] / q[:, j + 1])
                xi[:, j] = (xi[:, j] * damp + 0.5 * d * force(j)) * damp
            xi[:, m - 1] += 0.5 * d * force(m - 1)
    scale_t = torch.as_tensor(scale_total, dtype=state.dtype, device=state.device)
    momenta = state.momenta * scale_t[state.system_idx].unsqueeze(1)
    return state.replace(momenta=momenta, eta=eta, xi=xi)


def step(
    state: NoseHooverState,
    potential: Potential,
    *,
    dt: float,
    temperature: float,
    n_chain: int = 1,
    order: int = 3,
) -> NoseHooverState:
    """One step of ``dt`` fs at ``temperature`` K."""
    h = dt * FS
    kt = KB * temperature
    weights = _weights(order)
    state = _chain(state, 0.5 * h, kt, n_chain, weights)
    state = drift(kick(state, 0.5 * h), h)
    state = kick(evaluate(state, potential), 0.5 * h)
    return _chain(state, 0.5 * h, kt, n_chain, weights)


def conserved_energy(state: NoseHooverState, temperature: float) -> Tensor:
    """H̃ per system (eV): constant along exact trajectories, a check of the integration."""
    kt = KB * temperature
    dof = state.dof.detach().cpu().double().numpy()
    extra = (state.xi**2 / (2.0 * state.q)).sum(1) + dof * kt * state.eta[:, 0]
    extra = extra + kt * state.eta[:, 1:].sum(1)
    extra_t = torch.as_tensor(extra, dtype=state.dtype, device=state.device)
    return state.energy + state.kinetic_energy() + extra_t
