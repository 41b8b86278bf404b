"""Normal modes, frequencies and harmonic thermochemistry of a molecule or a Γ-point crystal.

With Φ the force constants and M the masses, the mass-weighted Hessian D = M^{-1/2} Φ M^{-1/2}
is restricted to the complement Q of the rigid-body modes (translations; rotations for a free
molecule) and diagonalised: Qᵀ D Q u_n = λ_n u_n. Frequencies are ν_n = √λ_n / 2π
(negative where λ_n < 0: an imaginary mode), the Cartesian mode of n is M^{-1/2} Q u_n.

Harmonic thermochemistry, x_n = ħω_n / k_B T, sums over the real modes:

    ZPE = Σ ħω/2,   U = ZPE + Σ ħω / (e^x − 1),   S = k_B Σ [x / (e^x − 1) − ln(1 − e^{−x})],
    F = U − T S,    C_v = k_B Σ x² e^x / (e^x − 1)²
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units

from equipot.properties.hessians import (
    OMEGA_TO_THZ,
    THZ_TO_CM,
    THZ_TO_EV,
    Source,
    force_constants,
    internal_basis,
    mass_weighted,
    signed_sqrt,
)


@dataclass
class VibrationalModes:
    """Normal modes of ``atoms`` (rigid modes removed), sorted by frequency."""

    atoms: Atoms
    eigenvalues: np.ndarray  # (M,) eV/(Å²·amu), of the mass-weighted Hessian
    modes: np.ndarray  # (M, N, 3) Cartesian displacement patterns, each of unit norm
    force_constants: np.ndarray  # (3N, 3N) eV/Å²

    @property
    def frequencies_thz(self) -> np.ndarray:
        """ν in THz, negative for imaginary modes."""
        return signed_sqrt(self.eigenvalues) * OMEGA_TO_THZ

    @property
    def frequencies_cm(self) -> np.ndarray:
        """Wavenumbers in cm⁻¹, negative for imaginary modes."""
        return self.frequencies_thz * THZ_TO_CM

    @property
    def energies(self) -> np.ndarray:
        """Quantum energies ħω in eV, negative for imaginary modes."""
        return self.frequencies_thz * THZ_TO_EV

    @property
    def imaginary(self) -> np.ndarray:
        """Indices of imaginary modes (λ < 0 beyond numerical noise)."""
        scale = max(float(np.abs(self.eigenvalues).max(initial=0.0)), 1e-12)
        return np.flatnonzero(self.eigenvalues < -1e-8 * scale)


def vibrational_modes(
    atoms: Atoms,
    source: Source,
    *,
    method: str = "auto",
    delta: float = 0.005,
    project: str = "auto",
    progress: bool = False,
) -> VibrationalModes:
    """Normal modes of ``atoms`` from the Hessian of ``source`` (model or ASE calculator).

    ``project``: ``"auto"`` removes translations, plus rotations when no direction is periodic;
    ``"translations"``, ``"all"`` (translations and rotations) or ``"none"`` force a choice.
    """
    phi = force_constants(atoms, source, method=method, delta=delta, progress=progress)
    return modes_from_force_constants(atoms, phi, project=project)


def modes_from_force_constants(
    atoms: Atoms, phi: np.ndarray, project: str = "auto"
) -> VibrationalModes:
    """Diagonalise the mass-weighted ``phi`` on the complement of the rigid-body modes."""
    n3 = 3 * len(atoms)
    if project == "none":
        basis = np.eye(n3)
    elif project in ("auto", "translations", "all"):
        rotations = {"auto": None, "translations": False, "all": True}[project]
        basis = internal_basis(atoms, rotations=rotations)
    else:
        raise ValueError(f"unknown projection {project!r} (auto, translations, all, none)")
    masses = atoms.get_masses()
    dyn = basis.T @ mass_weighted(phi, masses) @ basis
    eigenvalues, vectors = np.linalg.eigh(0.5 * (dyn + dyn.T))
    cartesian = (basis @ vectors).T / np.sqrt(np.repeat(masses, 3))[None, :]
    cartesian /= np.linalg.norm(cartesian, axis=1, keepdims=True)
    return VibrationalModes(
        atoms=atoms.copy(),
        eigenvalues=eigenvalues,
        modes=cartesian.reshape(len(eigenvalues), len(atoms), 3),
        force_constants=phi,
    )


def harmonic_thermo(
    energies: np.ndarray, temperatures: np.ndarray | float, *, cutoff: float = 1e-5
) -> dict[str, np.ndarray]:
    """Harmonic ZPE, U, S, F, C_v (eV, eV/K) at each temperature (K) from mode energies (eV).

    Modes with ħω ≤ ``cutoff`` eV (imaginary or numerically zero) are left out, with a warning
    for imaginary ones.
    """
    energies = np.asarray(energies, dtype=np.float64)
    if np.any(energies < -cutoff):
        warnings.warn(
            f"{int(np.sum(energies < -cutoff))} imaginary mode(s) left out of the thermochemistry",
            stacklevel=2,
        )
    e = energies[energies > cutoff]
    temps = np.atleast_1d(np.asarray(temperatures, dtype=np.float64))
    zpe = 0.5 * e.sum()
    out = {k: np.zeros_like(temps) for k in ("U", "S", "F", "Cv")}
    for t_index, t in enumerate(temps):
        if t <= 0:
            out["U"][t_index] = out["F"][t_index] = zpe
            continue
        x = e / (units.kB * t)
        bose = 1.0 / np.expm1(x)
        out["U"][t_index] = zpe + np.sum(e * bose)
        out["S"][t_index] = units.kB * np.sum(x * bose - np.log(-np.expm1(-x)))
        out["Cv"][t_index] = units.kB * np.sum(x**2 * np.exp(x) * bose**2)
        out["F"][t_index] = out["U"][t_index] - t * out["S"][t_index]
    out["ZPE"] = np.full_like(temps, zpe)
    out["T"] = temps
    return out


def write_modes(path: str | Path, result: VibrationalModes, amplitude: float = 1.0) -> Path:
    """One extxyz frame per mode: per-atom ``mode`` vectors (Å, unit norm × ``amplitude``).

    Each frame's info holds ``mode_index``, ``frequency_cm`` and ``frequency_thz``, so viewers
    (OVITO, ASE's GUI) can draw the vectors and colour by frequency.
    """
    from ase.io import write

    frames = []
    for index, (mode, nu, cm) in enumerate(
        zip(result.modes, result.frequencies_thz, result.frequencies_cm, strict=True)
    ):
        frame = result.atoms.copy()
        frame.calc = None
        frame.arrays["mode"] = amplitude * mode
        frame.info.update(
            {
                "mode_index": index,
                "frequency_thz": float(nu),
                "frequency_cm": float(cm),
                "imaginary": bool(nu < 0),
            }
        )
        frames.append(frame)
    path = Path(path)
    write(path, frames, format="extxyz")
    return path


def animate_mode(
    result: VibrationalModes, index: int, amplitude: float = 0.3, frames: int = 20
) -> list[Atoms]:
    """Snapshots r + A·sin(2πk/frames)·mode_index for a movie of one mode."""
    images = []
    for k in range(frames):
        image = result.atoms.copy()
        image.calc = None
        image.positions += amplitude * np.sin(2 * np.pi * k / frames) * result.modes[index]
        images.append(image)
    return images
