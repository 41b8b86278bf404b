"""A classical core–shell (Dick–Overhauser) model of NaCl: an exact, polarisable reference for
ε∞, ε₀ and Born charges, with periodic Ewald electrostatics in a uniform field.

Ions: Na⁺ a rigid core (+1); Cl⁻ a core (X) and a massless shell (Y, X + Y = −1) on a spring
k. Short range between Na cores and Cl shells (Born–Mayer) and between Cl shells
(Buckingham); Coulomb between all charges except a core and its own shell (Ewald, tin-foil
boundary); in a field ℰ the energy gains −ℰ·Σ q r over all charges:

    E(r, s; ℰ) = E_Ewald + Σ A e^{−r/ρ} − C/r⁶ + ½ k Σ |s_i − r_i|² − ℰ·(Σ_cores q r + Σ_shells Y s)

Shells follow adiabatically: every quantity is at min_s E. Forces on ions are −∂E/∂r at the
relaxed shells; μ = Σ q r + Σ Y s (for derivatives: only shell displacements and ion moves);
Born charges Z*_i = ∂F_i/∂ℰ and the clamped-ion polarisability α = ∂μ/∂ℰ by central
differences in the field (shells relaxed); ε∞ = 1 + α/(ε₀Ω); ε₀ from relaxing ions and shells
in the field. Parameters: Catlow-type NaCl set (A, ρ, C, Y, k below); all in eV, Å, e.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ase import Atoms, units

COULOMB = 1.0 / (4 * math.pi * units._eps0 / units._e * 1e-10)  # eV·Å/e² (14.3996)
SHELL_Y, SHELL_K = -2.485, 29.38  # Cl shell charge (e) and spring (eV/Å²)
NA_CL = (1170.8, 0.3233)  # Born–Mayer A (eV), ρ (Å), Na core – Cl shell
CL_CL = (1227.2, 0.3214, 29.06)  # Buckingham A, ρ, C (eV·Å⁶), Cl shell – Cl shell
CUTOFF = 9.0  # Å, short range and Ewald real space


def _distance(d: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """|d| with entries ``drop`` (zero vectors: self pairs) set to a dummy 1 before the norm,
    so their gradient is 0 rather than 0/0."""
    return torch.linalg.vector_norm(torch.where(drop[..., None], torch.ones_like(d), d), dim=-1)


def _images(cell: np.ndarray, cutoff: float) -> torch.Tensor:
    lengths = np.linalg.norm(np.linalg.inv(cell).T, axis=1) ** -1  # plane spacings
    n = np.ceil(cutoff / lengths).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), -1)
    return torch.as_tensor(grid.reshape(-1, 3) @ cell)


class ShellModel:
    def __init__(self, atoms: Atoms, alpha: float = 0.5):
        if set(atoms.get_chemical_symbols()) - {"Na", "Cl"} or not atoms.pbc.all():
            raise ValueError("the shell model is for periodic NaCl cells")
        self.atoms = atoms
        self.cell = torch.as_tensor(atoms.cell.array)
        self.volume = abs(float(np.linalg.det(atoms.cell.array)))
        self.alpha = alpha
        self.chlorine = torch.as_tensor(np.flatnonzero(atoms.numbers == 17))
        self.core_charge = torch.as_tensor(np.where(atoms.numbers == 11, 1.0, -1.0 - SHELL_Y))
        self.images = _images(atoms.cell.array, CUTOFF)
        reciprocal = 2 * np.pi * np.linalg.inv(atoms.cell.array).T
        k_cut = 2 * alpha * 6.0  # exp(−k²/4α²) < 1e-15 beyond
        kmax = np.ceil(k_cut / np.linalg.norm(reciprocal, axis=1)).astype(int)
        m = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in kmax], indexing="ij"), -1)
        k = m.reshape(-1, 3) @ reciprocal
        k2 = (k**2).sum(1)
        keep = (k2 > 0) & (k2 < k_cut**2)
        self.k = torch.as_tensor(k[keep])
        self.k2 = torch.as_tensor(k2[keep])

    # ------------------------------------------------------------------ energy
    def energy(self, cores: torch.Tensor, shells: torch.Tensor, efield) -> torch.Tensor:
        """E (eV) for core positions (N, 3) and Cl shell positions (N_Cl, 3)."""
        positions = torch.cat([cores, shells])
        charges = torch.cat([self.core_charge, torch.full((len(shells),), SHELL_Y)])
        n = len(cores)
        owner = torch.cat([torch.arange(n), self.chlorine])  # ion each charge belongs to
        e = self._ewald(positions, charges, owner)
        # short range: Na core – Cl shell, Cl shell – Cl shell (all images within the cutoff)
        sodium = torch.as_tensor(np.flatnonzero(self.atoms.numbers == 11))
        e = e + self._pairs(cores[sodium], shells, NA_CL[0], NA_CL[1], 0.0, same=False)
        e = e + self._pairs(shells, shells, *CL_CL, same=True)
        e = e + 0.5 * SHELL_K * ((shells - cores[self.chlorine]) ** 2).sum()
        field = torch.as_tensor(efield, dtype=cores.dtype)
        return e - field @ (charges[:, None] * positions).sum(0)

    def _pairs(self, a, b, big_a, rho, c, same: bool) -> torch.Tensor:
        d = b[None, :, None, :] - a[:, None, None, :] + self.images[None, None]
        drop = self._self_pairs(len(a), len(b)) if same else torch.zeros(d.shape[:-1], dtype=bool)
        r = _distance(d, drop)
        mask = (r < CUTOFF) & ~drop
        r = torch.where(mask, r, torch.full_like(r, CUTOFF))
        value = big_a * torch.exp(-r / rho) - c / r**6
        return (0.5 if same else 1.0) * torch.where(mask, value, torch.zeros_like(r)).sum()

    def _self_pairs(self, n: int, m: int) -> torch.Tensor:
        home = torch.linalg.vector_norm(self.images, dim=-1) < 1e-12
        return torch.eye(n, m, dtype=torch.bool)[..., None] & home[None, None]

    def _ewald(self, positions, charges, owner) -> torch.Tensor:
        a = self.alpha
        d = positions[None, :, None, :] - positions[:, None, None, :] + self.images[None, None]
        same_ion = (owner[:, None] == owner[None, :])[..., None]
        home = torch.linalg.vector_norm(self.images, dim=-1)[None, None] < 1e-12
        excluded = same_ion & home  # an ion's own charges in the home cell: not paired
        r = _distance(d, excluded)
        mask = (r < CUTOFF) & ~excluded
        safe = torch.where(mask, r, torch.ones_like(r))
        qq = (charges[:, None] * charges[None, :])[..., None]
        real = 0.5 * torch.where(mask, qq * torch.erfc(a * safe) / safe, torch.zeros_like(r)).sum()
        phase = positions @ self.k.T  # (M, K)
        s_cos = (charges[:, None] * torch.cos(phase)).sum(0)
        s_sin = (charges[:, None] * torch.sin(phase)).sum(0)
        recip = (2 * math.pi / self.volume) * (
            torch.exp(-self.k2 / (4 * a * a)) / self.k2 * (s_cos**2 + s_sin**2)
        ).sum()
        self_term = a / math.sqrt(math.pi) * (charges**2).sum()
        # the reciprocal sum includes every pair: remove an ion's own core–shell pair there
        pair = excluded.any(-1) & ~torch.eye(len(charges), dtype=torch.bool)
        i, j = torch.nonzero(pair, as_tuple=True)
        r2 = ((positions[j] - positions[i]) ** 2).sum(-1)  # core–shell: can be exactly 0
        x2 = a * a * r2
        small = x2 < 1e-4
        r = torch.sqrt(torch.where(small, torch.ones_like(r2), r2))
        series = 2 * a / math.sqrt(math.pi) * (1 - x2 / 3 + x2 * x2 / 10)
        erf_over_r = torch.where(small, series, torch.erf(a * r) / r)
        intra = 0.5 * (charges[i] * charges[j] * erf_over_r).sum()
        return COULOMB * (real + recip - self_term - intra)

    # ------------------------------------------------------------------ adiabatic shells
    def relax_shells(self, cores: torch.Tensor, efield, shells=None) -> torch.Tensor:
        """Shells at min_s E (Newton, exact Hessian: E is nearly quadratic in s)."""
        s = cores[self.chlorine].clone() if shells is None else shells.clone()
        for _ in range(20):
            s = s.detach().requires_grad_(True)
            e = self.energy(cores.detach(), s, efield)
            (g,) = torch.autograd.grad(e, s, create_graph=True)
            if float(g.detach().abs().max()) < 1e-9:
                break
            h = torch.stack([torch.autograd.grad(g.reshape(-1)[k], s, retain_graph=True)[0]
                             .reshape(-1) for k in range(g.numel())])  # fmt: skip
            step = torch.linalg.solve(h.detach(), g.detach().reshape(-1))
            s = s.detach() - step.reshape(s.shape)
        return s.detach()

    def evaluate(self, positions: np.ndarray, efield=(0.0, 0.0, 0.0)) -> dict:
        """Energy, forces on ions, dipole (all charges) with relaxed shells."""
        cores = torch.as_tensor(positions).requires_grad_(True)
        shells = self.relax_shells(cores.detach(), efield)
        e = self.energy(cores, shells, efield)
        (grad,) = torch.autograd.grad(e, cores)
        charges = torch.cat([self.core_charge, torch.full((len(shells),), SHELL_Y)])
        mu = (charges[:, None] * torch.cat([cores.detach(), shells])).sum(0)
        return {"energy": float(e.detach()), "forces": -grad.numpy(), "dipole": mu.numpy(),
                "shells": shells}  # fmt: skip

    def response(self, positions: np.ndarray, field: float = 1e-3) -> tuple[np.ndarray, ...]:
        """(α (3,3) e·Å²/V clamped ions, Z* (N, 3, 3) e) by central differences in ℰ (V/Å)."""
        alpha, born = np.zeros((3, 3)), np.zeros((len(positions), 3, 3))
        for a in range(3):
            step = np.zeros(3)
            step[a] = field
            plus, minus = self.evaluate(positions, step), self.evaluate(positions, -step)
            alpha[:, a] = (plus["dipole"] - minus["dipole"]) / (2 * field)
            born[:, a, :] = (plus["forces"] - minus["forces"]) / (2 * field)
        return 0.5 * (alpha + alpha.T), born

    def relax_ions(self, positions: np.ndarray, efield, steps: int = 30) -> np.ndarray:
        """Ions (and shells) at equilibrium in the field (Newton on the ions, FD Hessian)."""
        r = np.array(positions, dtype=np.float64)
        for _ in range(steps):
            f = self.evaluate(r, efield)["forces"]
            if np.abs(f).max() < 1e-7:
                break
            hessian = self.force_constants(r, efield)
            r = r + (np.linalg.pinv(hessian, rcond=1e-8) @ f.reshape(-1)).reshape(-1, 3)
        return r

    def force_constants(self, positions: np.ndarray, efield=(0, 0, 0), h: float = 1e-4):
        n3 = positions.size
        phi = np.zeros((n3, n3))
        for k in range(n3):
            rows = []
            for s in (1, -1):
                moved = positions.copy()
                moved.reshape(-1)[k] += s * h
                rows.append(self.evaluate(moved, efield)["forces"].reshape(-1))
            phi[k] = -(rows[0] - rows[1]) / (2 * h)
        return 0.5 * (phi + phi.T)

    def dielectric(self, field: float = 2e-3) -> dict:
        """Finite-field ε∞ (clamped ions), ε₀ (relaxed ions), Born charges of the cell."""
        from equipot.physics.fields import EPSILON_0

        r0 = self.atoms.positions
        alpha, born = self.response(r0)
        eps_inf = np.eye(3) + alpha / (EPSILON_0 * self.volume)
        static = np.zeros((3, 3))
        for a in range(3):
            step = np.zeros(3)
            step[a] = field
            mus = []
            for s in (1, -1):
                r = self.relax_ions(r0, s * step)
                mus.append(self.evaluate(r, s * step)["dipole"])
            static[:, a] = (mus[0] - mus[1]) / (2 * field)
        eps_0 = np.eye(3) + 0.5 * (static + static.T) / (EPSILON_0 * self.volume)
        return {"epsilon_inf": eps_inf, "epsilon_0": eps_0, "born_charges": born}
