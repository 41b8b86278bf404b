"""Infrared and Raman spectra: harmonic (normal modes with Born charges and ∂α/∂r) and from
the dipole of an MD trajectory.

Harmonic, for mode m with mass-weighted eigenvector e_m (3N) (:mod:`.vibrations`):

    μ'_m[a] = Σ_ib Z*_i[a, b] e_m(ib) / √M_i                           e/√amu
    I_m     = N_A / (12 ε₀ c²) · |μ'_m|²                                km/mol (1 e²/amu ≈ 974.9)
    α'_m    = Σ_ib ∂α/∂r_ib e_m(ib) / √M_i                              Å²/√amu (α in Å³)
    S_m     = 45 a'² + 7 γ'²   (Raman activity, Å⁴/amu),   ρ_m = 3γ'² / (45 a'² + 4γ'²)
    a' = tr α'/3,   γ'² = ½[(α'xx−α'yy)² + (α'yy−α'zz)² + (α'zz−α'xx)²] + 3(α'xy² + α'yz² + α'xz²)

From MD (classical lineshape of the dipole derivative autocorrelation, Wiener–Khinchin):

    I(ν̃) ∝ Σ_a |∫ w(t) μ̇_a(t) e^{−2πi c ν̃ t} dt|²

In the harmonic limit equipartition gives every normal coordinate ⟨Q̇²⟩ = k_B T, so the MD
band of mode m carries the weight I_m: the two are compared directly (both normalised).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units

from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.graph import batch_graphs
from equipot.model.energy_model import EnergyModel
from equipot.physics.fields import POLARIZABILITY_TO_A3, field_response
from equipot.properties.vibrations import VibrationalModes, vibrational_modes

# N_A/(12 ε₀ c²) for |dμ/dQ|² in e²/amu → km/mol
KM_PER_MOL = units._Nav / (12 * units._eps0 * units._c**2) * units._e**2 / units._amu / 1e3
CM_PER_FS = 1e15 / (units._c * 100.0)  # a frequency of 1/fs in cm⁻¹


@dataclass
class HarmonicSpectrum:
    frequencies_cm: np.ndarray  # (M,) negative: imaginary
    ir_intensities: np.ndarray | None  # (M,) km/mol
    raman_activities: np.ndarray | None  # (M,) Å⁴/amu
    depolarization: np.ndarray | None  # (M,)
    modes: VibrationalModes

    def rows(self) -> list[dict]:
        out = []
        for m, nu in enumerate(self.frequencies_cm):
            row = {"mode": m, "frequency_cm": float(nu)}
            if self.ir_intensities is not None:
                row["ir_km_mol"] = float(self.ir_intensities[m])
            if self.raman_activities is not None:
                row["raman_A4_amu"] = float(self.raman_activities[m])
                row["depolarization"] = float(self.depolarization[m])
            out.append(row)
        return out


def mass_weighted_modes(modes: VibrationalModes) -> np.ndarray:
    """(M, 3N) orthonormal mass-weighted eigenvectors e_m from the Cartesian mode shapes."""
    sqrt_m = np.sqrt(np.repeat(modes.atoms.get_masses(), 3))
    e = modes.modes.reshape(len(modes.eigenvalues), -1) * sqrt_m[None, :]
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def normal_mode_derivatives(modes: VibrationalModes, derivative: np.ndarray) -> np.ndarray:
    """X'_m = Σ_ib ∂X/∂r_ib e_m(ib)/√M_i for ∂X/∂r of shape (..., N, 3) → (M, ...)."""
    e = mass_weighted_modes(modes) / np.sqrt(np.repeat(modes.atoms.get_masses(), 3))[None, :]
    flat = derivative.reshape(*derivative.shape[:-2], -1)
    return np.moveaxis(flat @ e.T, -1, 0)


def ir_intensities(modes: VibrationalModes, born_charges: np.ndarray) -> np.ndarray:
    """I_m in km/mol from Born charges (N, 3, 3) [atom, dipole component, displacement]."""
    dmu = normal_mode_derivatives(modes, np.moveaxis(born_charges, 0, 1))  # (M, 3)
    return KM_PER_MOL * np.sum(dmu**2, axis=1)


def raman_activities(
    modes: VibrationalModes, dalpha_dr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Activities S_m (Å⁴/amu) and depolarisation ratios from ∂α_ab/∂r_ic (N, 3, 3, 3), α in
    Å³ (module docstring)."""
    d = normal_mode_derivatives(modes, np.moveaxis(dalpha_dr, 0, 2))  # (M, 3, 3)
    a = np.trace(d, axis1=1, axis2=2) / 3
    xx, yy, zz = d[:, 0, 0], d[:, 1, 1], d[:, 2, 2]
    off = d[:, 0, 1] ** 2 + d[:, 1, 2] ** 2 + d[:, 0, 2] ** 2
    gamma2 = 0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3 * off
    activity = 45 * a**2 + 7 * gamma2
    denominator = 45 * a**2 + 4 * gamma2
    depol = np.divide(3 * gamma2, denominator, out=np.zeros_like(gamma2), where=denominator > 0)
    return activity, depol


def polarizability_derivatives(model: EnergyModel, atoms: Atoms) -> np.ndarray:
    """∂α_ab/∂r_ic (N, 3, 3, 3) in Å² (α in Å³) from the model's polarizability head."""
    if model.heads is None or "polarizability" not in model.heads.heads:
        raise ValueError("Raman activities need a model with a 'polarizability' head")
    net = frozen_copy(model, torch.float64, "cpu")
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    with torch.enable_grad():
        positions = graph.positions.clone().requires_grad_(True)
        alpha = net(graph.replace(positions=positions)).outputs["polarizability"][0]
        out = torch.zeros(len(atoms), 3, 3, 3, dtype=torch.float64)
        for a in range(3):
            for b in range(a, 3):
                (g,) = torch.autograd.grad(alpha[a, b], positions, retain_graph=True)
                out[:, a, b] = out[:, b, a] = g
    return out.numpy() * POLARIZABILITY_TO_A3


def born_charges(model: EnergyModel, atoms: Atoms) -> np.ndarray:
    """Z*_i = ∂μ/∂r_i (N, 3, 3) of the model's dipole (:mod:`equipot.physics.fields`)."""
    net = frozen_copy(model, torch.float64, "cpu")
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    with torch.enable_grad():
        r = field_response(net, graph, polarizability=False, born_charges=True)
    return r.born_charges.detach().numpy()


def harmonic_spectrum(
    model: EnergyModel, atoms: Atoms, *, ir: bool = True, raman: bool = True
) -> HarmonicSpectrum:
    """Normal modes (exact Hessian) with IR intensities and/or Raman activities."""
    modes = vibrational_modes(atoms, model)
    intensities = ir_intensities(modes, born_charges(model, atoms)) if ir else None
    activity = depol = None
    if raman:
        activity, depol = raman_activities(modes, polarizability_derivatives(model, atoms))
    return HarmonicSpectrum(modes.frequencies_cm, intensities, activity, depol, modes)


def broaden(
    grid: np.ndarray,
    centres: np.ndarray,
    weights: np.ndarray,
    fwhm: float,
    shape: str = "lorentzian",
) -> np.ndarray:
    """Σ_m w_m L(ν̃ − ν̃_m): unit-area Lorentzians (or Gaussians) of full width ``fwhm``."""
    x = grid[:, None] - centres[None, :]
    if shape == "lorentzian":
        g = 0.5 * fwhm / np.pi / (x**2 + (0.5 * fwhm) ** 2)
    elif shape == "gaussian":
        sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
        g = np.exp(-0.5 * (x / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    else:
        raise ValueError(f"unknown line shape {shape!r} (lorentzian, gaussian)")
    return g @ weights


def dipole_spectrum(
    dipoles: np.ndarray, dt_fs: float, *, max_cm: float = 4500.0, pad: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(ν̃ cm⁻¹, I(ν̃)) from dipoles (T, 3) sampled every ``dt_fs`` (module docstring): the
    derivative by central differences, a Hann window, zero padding × ``pad``; I normalised to
    a maximum of 1 below ``max_cm``."""
    dipoles = np.asarray(dipoles, dtype=np.float64)
    if dipoles.ndim != 2 or dipoles.shape[1] != 3 or len(dipoles) < 8:
        raise ValueError(f"need dipoles of shape (T ≥ 8, 3), got {dipoles.shape}")
    if dt_fs <= 0:
        raise ValueError(f"the time between dipoles must be positive, got {dt_fs} fs")
    velocity = np.gradient(dipoles, dt_fs, axis=0)
    velocity -= velocity.mean(axis=0)
    window = np.hanning(len(velocity))[:, None]
    n = pad * len(velocity)
    power = np.sum(np.abs(np.fft.rfft(velocity * window, n=n, axis=0)) ** 2, axis=1)
    wavenumbers = np.fft.rfftfreq(n, d=dt_fs) * CM_PER_FS
    keep = wavenumbers <= max_cm
    wavenumbers, power = wavenumbers[keep], power[keep]
    return wavenumbers, power / max(float(power.max()), 1e-300)


def trajectory_dipoles(model: EnergyModel, frames: list[Atoms], batch: int = 32) -> np.ndarray:
    """The model's dipole (T, 3) e·Å of every frame (no field), evaluated in batches."""
    if model.heads is None or "dipole" not in model.heads.heads:
        raise ValueError("an IR spectrum from MD needs a model with a 'dipole' head")
    net = frozen_copy(model, torch.float64, "cpu")
    out = []
    with torch.no_grad():
        for start in range(0, len(frames), batch):
            graphs = [
                atoms_to_graph(a, model.config.r_max, torch.float64)
                for a in frames[start : start + batch]
            ]
            out.append(net(batch_graphs(graphs)).outputs["dipole"].numpy())
    return np.concatenate(out)


def write_table(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
