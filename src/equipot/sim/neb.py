"""Nudged elastic band with a climbing image (Henkelman, Uberuaga & Jónsson 2000).

The internal images form one batched :class:`SimState` (one system per image), so every
iteration is one potential call for the whole band. On image i with energy V_i, true force
F_i and neighbours R_{i±1}:

    tangent τ_i: the "improved tangent" (Henkelman & Jónsson 2000) — towards the higher
        neighbour, energy-weighted mix of τ⁺ = R_{i+1} − R_i and τ⁻ = R_i − R_{i−1} at extrema
    F_i^NEB = F_i − (F_i·τ_i)τ_i + k(|τ⁺| − |τ⁻|)τ_i       (perpendicular force + spring)
    climbing image (the highest, once ``climb``): F = F_i − 2(F_i·τ_i)τ_i

and the band is relaxed with FIRE on all images at once until every F^NEB is below ``fmax``.
With ``climb`` the top image converges to the saddle point, so the barrier is exact (up to
fmax) and independent of k and of the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from ase.geometry import find_mic

from equipot.sim.optimizers import FIRE
from equipot.sim.potentials import Potential, evaluate
from equipot.sim.state import SimState


@dataclass
class NEBResult:
    images: list[Atoms]  # the whole band, endpoints included
    energies: np.ndarray  # (n+2,) eV
    path: np.ndarray  # (n+2,) cumulative distance along the band, Å
    barrier: float  # max E − E_initial, eV
    reverse_barrier: float  # max E − E_final, eV
    climbing_image: int  # index of the top image in ``images``
    converged: bool
    iterations: int
    fmax: float
    history: list[float] = field(default_factory=list)  # max NEB force per iteration

    def to_dict(self) -> dict:
        return {
            "barrier_eV": self.barrier,
            "reverse_barrier_eV": self.reverse_barrier,
            "energies_eV": self.energies.tolist(),
            "relative_energies_eV": (self.energies - self.energies[0]).tolist(),
            "path_A": self.path.tolist(),
            "climbing_image": self.climbing_image,
            "converged": self.converged,
            "iterations": self.iterations,
            "fmax_eV_per_A": self.fmax,
        }


def interpolate(initial: Atoms, final: Atoms, n_images: int) -> list[Atoms]:
    """Linear interpolation between the endpoints (minimum-image displacement in periodic
    directions), ``n_images`` internal images."""
    if len(initial) != len(final) or (initial.numbers != final.numbers).any():
        raise ValueError("initial and final structures must have the same atoms in the same order")
    if not np.allclose(initial.cell.array, final.cell.array):
        raise ValueError("initial and final structures must have the same cell")
    d = final.positions - initial.positions
    if initial.pbc.any():
        d, _ = find_mic(d, initial.cell, initial.pbc)
    band = []
    for t in np.linspace(0.0, 1.0, n_images + 2):
        image = initial.copy()
        image.calc = None
        image.positions = initial.positions + t * d
        band.append(image)
    return band


def _tangents(pos: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit tangents and |τ⁺|, |τ⁻| of the internal images (pos (n+2, N, 3))."""
    plus = pos[2:] - pos[1:-1]
    minus = pos[1:-1] - pos[:-2]
    e_prev, e, e_next = energy[:-2], energy[1:-1], energy[2:]
    d_max = np.maximum(np.abs(e_next - e), np.abs(e_prev - e))[:, None, None]
    d_min = np.minimum(np.abs(e_next - e), np.abs(e_prev - e))[:, None, None]
    mixed = np.where(
        (e_next > e_prev)[:, None, None], plus * d_max + minus * d_min, plus * d_min + minus * d_max
    )
    up = ((e_next > e) & (e > e_prev))[:, None, None]
    down = ((e_next < e) & (e < e_prev))[:, None, None]
    tau = np.where(up, plus, np.where(down, minus, mixed))
    norm = np.sqrt((tau**2).sum((1, 2), keepdims=True))
    tau = tau / np.where(norm > 0, norm, 1.0)
    return tau, np.sqrt((plus**2).sum((1, 2))), np.sqrt((minus**2).sum((1, 2)))


def neb(
    initial: Atoms,
    final: Atoms,
    potential: Potential,
    *,
    n_images: int = 7,
    climb: bool = True,
    spring: float = 0.1,
    fmax: float = 0.05,
    max_steps: int = 2000,
    images: list[Atoms] | None = None,
    callback=None,
    **fire_options,
) -> NEBResult:
    """Relax a band of ``n_images`` internal images (or the given ``images``, endpoints
    included) between two relaxed endpoints; ``spring`` k in eV/Å². The climbing image is
    switched on once the band is roughly converged (max force < 5·fmax), as usual."""
    band = interpolate(initial, final, n_images) if images is None else list(images)
    n = len(band) - 2
    if n < 1:
        raise ValueError("a band needs at least one internal image")
    ends = evaluate(SimState.from_atoms([band[0], band[-1]], remove_com=False), potential)
    e_ends = ends.energy.detach().cpu().double().numpy()
    state = SimState.from_atoms(band[1:-1], remove_com=False)
    fixed = state.fixed.cpu().numpy().reshape(n, -1)
    n_atoms = len(band[0])
    end_pos = ends.positions.detach().cpu().double().numpy().reshape(2, n_atoms, 3)
    info: dict = {"climb": False, "fmax": np.inf, "energy": None, "top": 1}

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        pos = x.reshape(n, n_atoms, 3)
        t = torch.as_tensor(x.reshape(-1, 3), dtype=state.dtype, device=state.device)
        ev = evaluate(state.replace(positions=t), potential)
        forces = ev.forces.detach().cpu().double().numpy().reshape(n, n_atoms, 3)
        energy = np.concatenate([e_ends[:1], ev.energy.detach().cpu().double().numpy(), e_ends[1:]])
        full = np.concatenate([end_pos[:1], pos, end_pos[1:]])
        tau, len_plus, len_minus = _tangents(full, energy)
        parallel = (forces * tau).sum((1, 2))[:, None, None]
        f_neb = forces - parallel * tau + spring * (len_plus - len_minus)[:, None, None] * tau
        top = int(np.argmax(energy[1:-1]))
        if info["climb"]:
            f_neb[top] = forces[top] - 2.0 * parallel[top] * tau[top]
        f_neb[fixed] = 0.0
        info.update(
            fmax=float(np.sqrt((f_neb**2).sum(2)).max()),
            energy=energy,
            top=top + 1,
            done_climbing=info["climb"] or not climb,
        )
        if climb and not info["climb"] and info["fmax"] < 5.0 * fmax:
            info["climb"] = True
        return float(energy[1:-1].sum()), -f_neb.ravel()

    opt = FIRE(objective, **fire_options)
    x0 = state.positions.detach().cpu().double().numpy().ravel()
    opt.init(x0)
    history = [info["fmax"]]
    iterations = 0
    while not (info["fmax"] < fmax and info["done_climbing"]) and iterations < max_steps:
        opt.step()
        iterations += 1
        history.append(info["fmax"])
        if callback is not None:
            callback(info)
    energies = info["energy"]
    final_images = []
    pos = np.concatenate([end_pos[:1], opt.x.reshape(n, n_atoms, 3), end_pos[1:]])
    for k, image in enumerate(band):
        image = image.copy()
        image.positions = pos[k]
        final_images.append(image)
    steps = np.sqrt(((pos[1:] - pos[:-1]) ** 2).sum((1, 2)))
    return NEBResult(
        images=final_images,
        energies=energies,
        path=np.concatenate([[0.0], np.cumsum(steps)]),
        barrier=float(energies.max() - energies[0]),
        reverse_barrier=float(energies.max() - energies[-1]),
        climbing_image=info["top"] if climb else int(np.argmax(energies)),
        converged=info["fmax"] < fmax and info["done_climbing"],
        iterations=iterations,
        fmax=info["fmax"],
        history=history,
    )
