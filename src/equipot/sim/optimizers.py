"""Minimisers on a flat coordinate vector x (float64 numpy): FIRE, L-BFGS and Newton's method
with the exact Hessian in a trust region. :mod:`equipot.sim.relax` maps structures (and
cells) to x; here only ``objective(x) -> (energy, gradient)`` is seen.

Each optimiser has ``init(x)`` and ``step()``; one ``step`` is one iteration (FIRE and
L-BFGS: one energy/gradient evaluation; Newton: one evaluation and one Hessian).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def _limit(dx: np.ndarray, maxstep: float) -> np.ndarray:
    """Scale a step so that no atom (consecutive triple of x) moves more than maxstep."""
    largest = np.sqrt((dx.reshape(-1, 3) ** 2).sum(1)).max() if dx.size else 0.0
    return dx * (maxstep / largest) if largest > maxstep else dx


class _Base:
    def __init__(self, objective: Objective):
        self.objective = objective
        self.evaluations = 0

    def _evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        energy, gradient = self.objective(x)
        return float(energy), np.asarray(gradient, dtype=np.float64)

    def init(self, x: np.ndarray) -> None:
        self.x = np.array(x, dtype=np.float64)
        self.energy, self.gradient = self._evaluate(self.x)


class FIRE(_Base):
    """Fast inertial relaxation engine (Bitzek et al. 2006), unit masses, ASE's defaults:
    MD with velocity mixing v ← (1−α)v + α|v| f/|f| while P = f·v > 0; on P ≤ 0 the
    velocity is zeroed and the time step halved."""

    def __init__(
        self,
        objective: Objective,
        *,
        dt: float = 0.1,
        dt_max: float = 1.0,
        maxstep: float = 0.2,
        n_min: int = 5,
        f_inc: float = 1.1,
        f_dec: float = 0.5,
        alpha_start: float = 0.1,
        f_alpha: float = 0.99,
    ):
        super().__init__(objective)
        self.dt, self.dt_max, self.maxstep = dt, dt_max, maxstep
        self.n_min, self.f_inc, self.f_dec = n_min, f_inc, f_dec
        self.alpha_start, self.f_alpha = alpha_start, f_alpha

    def init(self, x: np.ndarray) -> None:
        super().init(x)
        self.v = np.zeros_like(self.x)
        self.alpha = self.alpha_start
        self.n_positive = 0

    def step(self) -> None:
        f = -self.gradient
        power = float(f @ self.v)
        if power > 0:
            f_norm = np.linalg.norm(f)
            self.v = (1 - self.alpha) * self.v + self.alpha * np.linalg.norm(self.v) * f / f_norm
            if self.n_positive > self.n_min:
                self.dt = min(self.dt * self.f_inc, self.dt_max)
                self.alpha *= self.f_alpha
            self.n_positive += 1
        elif np.any(self.v):
            self.v[:] = 0.0
            self.alpha = self.alpha_start
            self.dt *= self.f_dec
            self.n_positive = 0
        self.v = self.v + self.dt * f
        dx = self.dt * self.v
        norm = np.linalg.norm(dx)
        if norm > self.maxstep:
            dx *= self.maxstep / norm
        self.x = self.x + dx
        self.energy, self.gradient = self._evaluate(self.x)


class LBFGS(_Base):
    """Limited-memory BFGS (two-loop recursion) without line search, as in ASE: the first
    inverse Hessian guess is 1/``alpha`` (Å²/eV), later ones sᵀy/yᵀy (Nocedal & Wright);
    steps are capped at ``maxstep`` per atom; the memory is cleared when a step would go
    uphill or the curvature condition fails."""

    def __init__(
        self, objective: Objective, *, memory: int = 100, maxstep: float = 0.2, alpha: float = 70.0
    ):
        super().__init__(objective)
        self.memory, self.maxstep, self.alpha = memory, maxstep, alpha

    def init(self, x: np.ndarray) -> None:
        super().init(x)
        self.s: list[np.ndarray] = []
        self.y: list[np.ndarray] = []

    def _direction(self, g: np.ndarray) -> np.ndarray:
        q = g.copy()
        rhos = [1.0 / float(y @ s) for s, y in zip(self.s, self.y, strict=True)]
        a = []
        for s, y, rho in zip(reversed(self.s), reversed(self.y), reversed(rhos), strict=True):
            a.append(rho * float(s @ q))
            q -= a[-1] * y
        if self.s:
            gamma = float(self.s[-1] @ self.y[-1]) / float(self.y[-1] @ self.y[-1])
        else:
            gamma = 1.0 / self.alpha
        r = gamma * q
        for s, y, rho, ai in zip(self.s, self.y, rhos, reversed(a), strict=True):
            r += (ai - rho * float(y @ r)) * s
        return -r

    def step(self) -> None:
        p = self._direction(self.gradient)
        if float(p @ self.gradient) >= 0:  # not a descent direction: restart
            self.s.clear()
            self.y.clear()
            p = -self.gradient / self.alpha
        dx = _limit(p, self.maxstep)
        x_new = self.x + dx
        e_new, g_new = self._evaluate(x_new)
        s, y = x_new - self.x, g_new - self.gradient
        if float(s @ y) > 1e-12 * float(y @ y) and float(s @ y) > 0:
            self.s.append(s)
            self.y.append(y)
            if len(self.s) > self.memory:
                self.s.pop(0)
                self.y.pop(0)
        self.x, self.energy, self.gradient = x_new, e_new, g_new


class Newton(_Base):
    """Newton's method with the exact Hessian, globalised by a trust region.

    ``hessian(x)`` returns ``(H, Q)``: the Hessian in an orthonormal basis Q (columns) of the
    directions the step may take (e.g. without fixed atoms or rigid-body motions). Each
    iteration minimises the quadratic model m(p) = gᵀp + ½pᵀHp over |p| ≤ Δ through
    the eigen-decomposition H = Σ λ_i v_i v_iᵀ: p(μ) = −Σ (v_iᵀg)/(λ_i + μ) v_i with μ = 0
    when H is positive definite and the Newton step fits, otherwise the μ > max(0, −λ_min)
    with |p(μ)| = Δ. The step is accepted when the actual decrease ρ = ΔE/m(p) > 10⁻⁴ (or
    when m(p) is below the energy's rounding, where ρ means nothing); Δ shrinks for ρ < ¼
    and doubles for ρ > ¾ at the boundary.

    ``hessian_refresh`` = k > 1 computes the exact Hessian only at the start, after every k
    accepted steps and after a rejected step taken with an updated one; in between the
    Hessian gets BFGS updates H ← H − H s sᵀ H / sᵀ H s + y yᵀ / yᵀ s from each accepted
    step s and gradient change y (skipped unless yᵀs and sᵀHs are positive). k = 1 (default)
    is Newton's method proper.
    """

    def __init__(
        self,
        objective: Objective,
        hessian: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        *,
        trust_radius: float = 0.3,
        max_trust_radius: float = 1.5,
        energy_resolution: float = 1e-9,
        hessian_refresh: int = 1,
    ):
        super().__init__(objective)
        if hessian_refresh < 1:
            raise ValueError(f"hessian_refresh must be at least 1, got {hessian_refresh}")
        self.hessian = hessian
        self.radius, self.max_radius = trust_radius, max_trust_radius
        self.energy_resolution = energy_resolution
        self.hessian_refresh = hessian_refresh
        self.hessians = 0
        self._cached: tuple | None = None  # (H, Q) for the current x
        self._updates = 0  # BFGS updates since the last exact Hessian

    def step(self) -> None:
        if self._cached is None:
            self.hessians += 1  # after a rejected step x is unchanged: reuse its Hessian
            self._cached, self._updates = self.hessian(self.x), 0
        h, basis = self._cached
        g = basis.T @ self.gradient
        lam, vec = np.linalg.eigh(0.5 * (h + h.T))
        p = self._solve(lam, vec, vec.T @ g)
        predicted = float(g @ p + 0.5 * p @ (h @ p))
        x_new = self.x + basis @ p
        e_new, g_new = self._evaluate(x_new)
        actual = e_new - self.energy
        if abs(predicted) < self.energy_resolution and abs(actual) < 10 * self.energy_resolution:
            rho = 1.0  # both changes are at the level of rounding: trust the quadratic model
        else:
            rho = actual / predicted if predicted < 0 else -np.inf
        norm = np.linalg.norm(p)
        if rho < 0.25:
            self.radius = 0.25 * norm
        elif rho > 0.75 and norm > 0.99 * self.radius:
            self.radius = min(2.0 * self.radius, self.max_radius)
        if rho > 1e-4:
            if self._updates + 1 < self.hessian_refresh:
                self._cached = (_bfgs(h, p, basis.T @ (g_new - self.gradient)), basis)
                self._updates += 1
            else:
                self._cached = None
            self.x, self.energy, self.gradient = x_new, e_new, g_new
        elif self._updates:
            self._cached = None  # the updated Hessian misled the step: take the exact one

    def _solve(self, lam: np.ndarray, vec: np.ndarray, gv: np.ndarray) -> np.ndarray:
        def step_for(mu: float) -> np.ndarray:
            return -vec @ (gv / (lam + mu))

        if lam[0] > 0:
            p = step_for(0.0)
            if np.linalg.norm(p) <= self.radius:
                return p
        lo = max(0.0, -lam[0]) + 1e-12 * max(1.0, abs(lam[-1]))
        hi = lo + np.linalg.norm(gv) / self.radius + abs(lam[-1])
        if np.linalg.norm(step_for(lo)) <= self.radius:  # "hard case": g ⟂ lowest mode
            p = step_for(lo)
            extra = np.sqrt(max(self.radius**2 - p @ p, 0.0))
            return p + extra * vec[:, 0]
        for _ in range(200):  # |p(μ)| decreases monotonically in μ: bisection
            mid = 0.5 * (lo + hi)
            if np.linalg.norm(step_for(mid)) > self.radius:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * hi:
                break
        return step_for(hi)


def _bfgs(h: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """BFGS update of the Hessian ``h`` by the step ``s`` and gradient change ``y``."""
    hs = h @ s
    shs, ys = float(s @ hs), float(y @ s)
    if shs <= 0.0 or ys <= 1e-12 * np.linalg.norm(y) * np.linalg.norm(s):
        return h
    return h - np.outer(hs, hs) / shs + np.outer(y, y) / ys
