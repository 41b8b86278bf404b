"""Elastic constants C_ij (Voigt, 6×6) from energy–strain and stress–strain fits.

Strains are Voigt vectors e = (e_xx, e_yy, e_zz, 2e_yz, 2e_xz, 2e_xy) (engineering shears),
applied to the relaxed reference cell as cell' = cell·(1 + ε) with positions following, then
the ions are relaxed at fixed cell (relaxed-ion constants). With V0 the reference volume,

    energy–strain:  E(δ·u)/V0 = E0/V0 + δ σ0·u + ½ δ² uᵀ C u + O(δ³)
    stress–strain:  σ(δ·e_j) = σ0 + δ C[:, j] + O(δ²)              (ASE's stress sign)

For each direction u (the six e_i and the fifteen e_i + e_j) a polynomial through the energies
at δ ∈ {±h, ±2h, 0, …} gives uᵀCu, hence C_ii and C_ij = (u_ijᵀ C u_ij − C_ii − C_jj)/2; for
each e_j a cubic fit of the stresses gives column j. Results in GPa.

Born stability (any symmetry): C is positive definite. Voigt–Reuss–Hill averages:
K_V = [(C11+C22+C33) + 2(C12+C23+C31)]/9, G_V = [(C11+C22+C33) − (C12+C23+C31)
+ 3(C44+C55+C66)]/15, with S = C⁻¹: K_R = 1/[(S11+S22+S33) + 2(S12+S23+S31)],
G_R = 15/[4(S11+S22+S33) − 4(S12+S23+S31) + 3(S44+S55+S66)], Hill = mean of both,
E = 9KG/(3K+G), ν = (3K−2G)/(2(3K+G)).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units

from equipot.progress import progress_bar
from equipot.properties.hessians import Source, as_calculator
from equipot.properties.relax import relax

EV_A3_TO_GPA = 1.0 / units.GPa  # ≈ 160.2177


def voigt_to_tensor(e: np.ndarray) -> np.ndarray:
    """Symmetric 3×3 strain tensor from a Voigt strain (engineering shears)."""
    e1, e2, e3, e4, e5, e6 = e
    return np.array([[e1, e6 / 2, e5 / 2], [e6 / 2, e2, e4 / 2], [e5 / 2, e4 / 2, e3]])


def strained(atoms: Atoms, voigt: np.ndarray) -> Atoms:
    """Copy of ``atoms`` with cell and positions deformed by 1 + ε(voigt)."""
    out = atoms.copy()
    deformation = np.eye(3) + voigt_to_tensor(np.asarray(voigt, dtype=np.float64))
    out.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    return out


@dataclass
class ElasticResult:
    C_energy: np.ndarray | None  # (6, 6) GPa from energy–strain
    C_stress: np.ndarray | None  # (6, 6) GPa from stress–strain
    reference: Atoms  # the relaxed cell the strains were applied to
    residual_stress: np.ndarray  # (6,) GPa of the reference
    strains: np.ndarray  # the δ values used
    data: dict = field(default_factory=dict)  # raw energies / stresses per direction

    @property
    def C(self) -> np.ndarray:
        """Stress–strain C where computed, else energy–strain."""
        return self.C_stress if self.C_stress is not None else self.C_energy


def elastic_constants(
    atoms: Atoms,
    source: Source,
    *,
    methods: tuple[str, ...] = ("energy", "stress"),
    step: float = 0.005,
    points: int = 2,
    relax_cell: bool = True,
    relax_ions: bool = True,
    fmax: float = 1e-4,
    progress: bool = False,
) -> ElasticResult:
    """C_ij of ``atoms`` (a bulk cell) in GPa from a model or any ASE calculator with stress.

    ``step`` is the strain increment h; strains δ = k·h for k = −points…points.
    ``relax_cell`` first relaxes the reference cell to zero stress (otherwise the pre-stress
    enters the two fits differently); ``relax_ions`` relaxes the ions at every strain.
    """
    unknown = set(methods) - {"energy", "stress"}
    if unknown or not methods:
        raise ValueError(f"methods must be among ('energy', 'stress'), got {methods}")
    if not np.all(atoms.pbc):
        raise ValueError("elastic constants need a structure periodic in all three directions")
    calc = as_calculator(source)
    tight = min(fmax, 1e-4)
    reference = relax(atoms, calc, fmax=tight, cell=True) if relax_cell else atoms.copy()
    reference.calc = calc
    volume = reference.get_volume()
    sigma0 = reference.get_stress(voigt=True)
    deltas = step * np.arange(-points, points + 1)

    directions: dict[tuple[int, ...], np.ndarray] = {}
    for i in range(6):
        directions[(i,)] = np.eye(6)[i]
    if "energy" in methods:
        for i, j in itertools.combinations(range(6), 2):
            directions[(i, j)] = np.eye(6)[i] + np.eye(6)[j]

    energies: dict[tuple[int, ...], list[float]] = {}
    stresses: dict[tuple[int, ...], list[np.ndarray]] = {}
    bar = progress_bar(len(directions) * len(deltas), "strains", enabled=progress)
    for key, u in directions.items():
        energies[key], stresses[key] = [], []
        for delta in deltas:
            if delta == 0.0:
                energies[key].append(reference.get_potential_energy())
                stresses[key].append(sigma0)
            else:
                image = strained(reference, delta * u)
                image = relax(image, calc, fmax=fmax) if relax_ions else image
                image.calc = calc
                energies[key].append(image.get_potential_energy())
                if len(key) == 1 and "stress" in methods:
                    stresses[key].append(image.get_stress(voigt=True))
            bar.update()
    bar.close()

    c_energy = c_stress = None
    degree = min(len(deltas) - 1, 4)
    if "energy" in methods:
        curvature = {
            key: 2.0 * np.polyfit(deltas, np.asarray(e) / volume, degree)[-3]
            for key, e in energies.items()
        }
        c_energy = np.zeros((6, 6))
        for i in range(6):
            c_energy[i, i] = curvature[(i,)]
        for i, j in itertools.combinations(range(6), 2):
            c_energy[i, j] = c_energy[j, i] = 0.5 * (
                curvature[(i, j)] - curvature[(i,)] - curvature[(j,)]
            )
        c_energy *= EV_A3_TO_GPA
    if "stress" in methods:
        c_stress = np.zeros((6, 6))
        for j in range(6):
            fit = np.polyfit(deltas, np.asarray(stresses[(j,)]), min(len(deltas) - 1, 3))
            c_stress[:, j] = fit[-2]
        c_stress = 0.5 * (c_stress + c_stress.T) * EV_A3_TO_GPA
    return ElasticResult(
        C_energy=c_energy,
        C_stress=c_stress,
        reference=reference,
        residual_stress=sigma0 * EV_A3_TO_GPA,
        strains=deltas,
        data={"energies": energies, "stresses": stresses, "volume": volume},
    )


def born_stability(c: np.ndarray) -> tuple[bool, np.ndarray]:
    """(stable, eigenvalues of C): mechanically stable iff C is positive definite."""
    eigenvalues = np.linalg.eigvalsh(0.5 * (c + c.T))
    return bool(eigenvalues.min() > 0), eigenvalues


def vrh_moduli(c: np.ndarray) -> dict[str, float]:
    """Voigt, Reuss and Hill bulk (K) and shear (G) moduli, Young's E and Poisson ν (Hill)."""
    s = np.linalg.inv(c)
    k_v = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[1, 2] + c[2, 0])) / 9
    g_v = (
        c[0, 0]
        + c[1, 1]
        + c[2, 2]
        - (c[0, 1] + c[1, 2] + c[2, 0])
        + 3 * (c[3, 3] + c[4, 4] + c[5, 5])
    ) / 15
    k_r = 1 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[1, 2] + s[2, 0]))
    g_r = 15 / (
        4 * (s[0, 0] + s[1, 1] + s[2, 2])
        - 4 * (s[0, 1] + s[1, 2] + s[2, 0])
        + 3 * (s[3, 3] + s[4, 4] + s[5, 5])
    )
    k_h, g_h = (k_v + k_r) / 2, (g_v + g_r) / 2
    return {
        "K_V": k_v,
        "K_R": k_r,
        "K_H": k_h,
        "G_V": g_v,
        "G_R": g_r,
        "G_H": g_h,
        "E_H": 9 * k_h * g_h / (3 * k_h + g_h),
        "nu_H": (3 * k_h - 2 * g_h) / (2 * (3 * k_h + g_h)),
    }
