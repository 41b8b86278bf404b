"""Structure relaxation: FIRE, L-BFGS or Newton (exact Hessian, trust region), optionally with
the cell, for one system.

Coordinates x handed to the optimisers (:mod:`equipot.sim.optimizers`):

* positions only: x = r (3N). For a free molecule (no periodic direction, no fixed atoms) the
  rigid translations and rotations are projected out of every gradient (and, for Newton, of
  the Hessian): the energy does not change along them, so their gradient component is pure
  noise that only destabilises the step.
* with the cell (``cell=True``): the cell is h = h⁰F and the positions r_i = s_i F with F = 1 + ε,
  ε symmetric, and x = (s, N·ε) (the factor N, as in ASE's cell filters, gives cell and atoms
  gradients of similar size). The function minimised is the enthalpy H = E + PV, with

      ∂H/∂s_i = −f_i Fᵀ,    ∂H/∂ε = sym(F⁻ᵀ V (σ + P·1))     (σ: stress, ASE's sign)

  and the cell is converged when |V(σ + P)|/N < fmax (eV), ASE's criterion.

Converged when every free atom's force is below ``fmax`` (eV/Å).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from equipot.physics.modes import rigid_body_modes
from equipot.sim.optimizers import FIRE, LBFGS, Newton
from equipot.sim.potentials import ModelPotential, Potential, evaluate
from equipot.sim.state import GPA, SimState

METHODS = ("fire", "lbfgs", "newton")


class Coordinates:
    """Maps the optimiser's flat x to a structure of one system and back."""

    def __init__(
        self,
        state: SimState,
        potential: Potential,
        *,
        cell: bool,
        pressure: float,
        project_rigid: bool,
    ):
        if state.n_systems != 1:
            raise ValueError(f"relaxation handles one structure at a time, got {state.n_systems}")
        if cell and not bool(state.pbc.all()):
            raise ValueError("cell relaxation needs a structure periodic in all 3 directions")
        self.state0 = state.replace(momenta=torch.zeros_like(state.momenta))
        self.potential = potential
        self.cell = cell
        self.pressure = pressure  # eV/Å³
        self.n = state.n_atoms
        self.h0 = state.cell[0].detach().cpu().double().numpy()
        self.free = ~state.fixed.cpu().numpy()
        self.rigid = project_rigid and not bool(state.pbc.any()) and bool(self.free.all())
        self.last: SimState | None = None
        self.fmax = np.inf
        self._cache: list[tuple[np.ndarray, SimState, float]] = []

    def x0(self) -> np.ndarray:
        r = self.state0.positions.detach().cpu().double().numpy().ravel()
        return np.concatenate([r, np.zeros(9)]) if self.cell else r

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = x[: 3 * self.n].reshape(self.n, 3)
        if not self.cell:
            return s, np.eye(3)
        eps = x[3 * self.n :].reshape(3, 3) / self.n
        return s, np.eye(3) + 0.5 * (eps + eps.T)

    def state_at(self, x: np.ndarray) -> SimState:
        s, f = self._split(x)
        t = lambda a: torch.as_tensor(a, dtype=self.state0.dtype, device=self.state0.device)  # noqa: E731
        return self.state0.replace(
            positions=t(s @ f), cell=t(self.h0 @ f)[None], energy=None, forces=None, stress=None
        )

    def rigid_modes(self, positions: np.ndarray) -> np.ndarray | None:
        return rigid_body_modes(positions) if self.rigid else None

    def select(self, x: np.ndarray) -> None:
        """Make ``last`` / ``fmax`` describe the point x (evaluated before, or now)."""
        for cached_x, state, fmax in self._cache:
            if np.array_equal(cached_x, x):
                self.last, self.fmax = state, fmax
                return
        self(x)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Energy (enthalpy) and its gradient with respect to x."""
        energy, grad = self._evaluate(x)
        self._cache = [*self._cache[-1:], (x.copy(), self.last, self.fmax)]
        return energy, grad

    def _evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        state = evaluate(self.state_at(x), self.potential, stress=self.cell)
        self.last = state
        _, f = self._split(x)
        forces = state.forces.detach().cpu().double().numpy()
        positions = state.positions.detach().cpu().double().numpy()
        modes = self.rigid_modes(positions)
        if modes is not None:
            flat = forces.ravel()
            forces = (flat - modes.T @ (modes @ flat)).reshape(-1, 3)
        forces[~self.free] = 0.0
        self.fmax = float(np.sqrt((forces**2).sum(1)).max()) if self.n else 0.0
        energy = float(state.energy[0])
        grad = [(-forces @ f.T).ravel()]
        if self.cell:
            volume = abs(np.linalg.det(self.h0 @ f))
            sigma = state.stress[0].detach().cpu().double().numpy()
            g_eps = np.linalg.inv(f).T @ (volume * (sigma + self.pressure * np.eye(3)))
            g_eps = 0.5 * (g_eps + g_eps.T)
            grad.append(g_eps.ravel() / self.n)
            energy += self.pressure * volume
            self.fmax = max(self.fmax, float(np.abs(g_eps).max()) / self.n)
        return energy, np.concatenate(grad)

    def hessian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q^T H Q, Q): the exact Hessian in an orthonormal basis Q of the allowed moves
        (free atoms' coordinates, minus rigid-body motions of a free molecule)."""
        if not isinstance(self.potential, ModelPotential):
            raise ValueError("Newton's method needs a model potential (exact Hessian)")
        state = self.state_at(x)
        h = self.potential.hessian(state).detach().cpu().double().numpy()
        keep = np.repeat(self.free, 3)
        basis = np.eye(3 * self.n)[:, keep]
        modes = self.rigid_modes(state.positions.detach().cpu().double().numpy())
        if modes is not None:
            _, _, vt = np.linalg.svd(modes)
            basis = vt[len(modes) :].T
        return basis.T @ h @ basis, basis


@dataclass(kw_only=True, eq=False)
class RelaxState(SimState):
    optimizer: FIRE | LBFGS | Newton
    coordinates: Coordinates
    fmax: float
    iterations: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)  # (energy, fmax) per step


def init(
    state: SimState | Atoms,
    potential: Potential,
    *,
    method: str = "fire",
    cell: bool = False,
    pressure: float = 0.0,
    project_rigid: bool = True,
    **options,
) -> RelaxState:
    """Start a relaxation (``pressure`` in GPa, for cell relaxations; ``options`` go to the
    optimiser, e.g. ``maxstep`` or ``trust_radius``)."""
    if isinstance(state, Atoms):
        state = SimState.from_atoms(state, remove_com=False)
    if method not in METHODS:
        raise ValueError(f"unknown relaxation method {method!r}; choose from {METHODS}")
    coords = Coordinates(
        state, potential, cell=cell, pressure=pressure * GPA, project_rigid=project_rigid
    )
    if method == "fire":
        opt = FIRE(coords, **options)
    elif method == "lbfgs":
        opt = LBFGS(coords, **options)
    else:
        if cell:
            raise ValueError("Newton's method relaxes positions only: use fire or lbfgs for cells")
        opt = Newton(coords, coords.hessian, **options)
    opt.init(coords.x0())
    return _wrap(state, opt, coords, iterations=0, history=[(opt.energy, coords.fmax)])


def _wrap(state, opt, coords, *, iterations, history) -> RelaxState:
    fields = {f: getattr(coords.last, f) for f in ("positions", "cell", "energy", "forces")}
    fields["stress"] = coords.last.stress
    base = state.replace(**fields)
    return RelaxState(
        **{f: getattr(base, f) for f in SimState.__dataclass_fields__},
        optimizer=opt,
        coordinates=coords,
        fmax=coords.fmax,
        iterations=iterations,
        history=history,
    )


def step(state: RelaxState, potential: Potential) -> RelaxState:
    """One iteration of the optimiser."""
    coords, opt = state.coordinates, state.optimizer
    coords.potential = potential
    opt.step()
    coords.select(opt.x)  # a rejected Newton step leaves the optimiser at an earlier point
    history = [*state.history, (opt.energy, coords.fmax)]
    return _wrap(state, opt, coords, iterations=state.iterations + 1, history=history)


@dataclass
class RelaxResult:
    state: SimState
    converged: bool
    iterations: int
    evaluations: int  # energy + force evaluations
    hessians: int  # exact Hessians (Newton)
    energy: float  # eV (enthalpy E + PV for cell relaxations under pressure)
    fmax: float
    history: list[tuple[float, float]]

    def atoms(self) -> Atoms:
        return self.state.to_atoms()[0]


def relax(
    structure: SimState | Atoms,
    potential: Potential,
    *,
    method: str = "fire",
    fmax: float = 0.05,
    max_steps: int = 1000,
    cell: bool = False,
    pressure: float = 0.0,
    project_rigid: bool = True,
    callback=None,
    **options,
) -> RelaxResult:
    """Relax until every force is below ``fmax`` eV/Å (or ``max_steps`` iterations).
    ``callback(state)`` is called after every iteration (trajectories, progress bars)."""
    state = init(
        structure,
        potential,
        method=method,
        cell=cell,
        pressure=pressure,
        project_rigid=project_rigid,
        **options,
    )
    while state.fmax >= fmax and state.iterations < max_steps:
        state = step(state, potential)
        if callback is not None:
            callback(state)
    opt = state.optimizer
    base = state.replace()
    plain = SimState(**{f: getattr(base, f) for f in SimState.__dataclass_fields__})
    return RelaxResult(
        state=plain,
        converged=state.fmax < fmax,
        iterations=state.iterations,
        evaluations=opt.evaluations,
        hessians=getattr(opt, "hessians", 0),
        energy=opt.energy,
        fmax=state.fmax,
        history=state.history,
    )
