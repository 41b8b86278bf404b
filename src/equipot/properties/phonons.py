"""Harmonic phonons: supercell force constants, dynamical matrix, bands, DOS, thermodynamics.

The supercell S = P·(unit cell) (rows of lattice vectors, P a 3×3 integer matrix) holds atoms
j = (κ_j, l_j): unit-cell atom κ_j translated by lattice vector l_j. Φ is the Hessian of the
supercell (autograd for a model, finite differences otherwise); by translation symmetry only
the rows of one atom p_κ per unit-cell atom κ are needed. For each unit-cell atom κ and each
supercell atom j,

    D_{κa,κ'b}(q) = Σ_{j: κ_j = κ'} Φ_{p_κ a, j b} / √(m_κ m_κ')
                    · (1/|I_j|) Σ_{d ∈ I_j} exp(2πi q·d)

where I_j are the shortest vectors r_j + T − r_{p_κ} over supercell translations T, all of the
same length (minimum image with equal weights for equidistant images, as phonopy does). q is
in fractional coordinates of the unit cell's reciprocal lattice (q·d = (q @ B)·d, B_i·a_j =
δ_ij). At q commensurate with the supercell this is exact; elsewhere it interpolates.
Frequencies ν = √λ / 2π in THz, negative for imaginary modes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import make_supercell
from ase.geometry import minkowski_reduce

from equipot.properties.hessians import (
    OMEGA_TO_THZ,
    THZ_TO_EV,
    Source,
    force_constants,
    signed_sqrt,
)


def supercell_matrix(supercell) -> np.ndarray:
    """3×3 integer matrix from (a, b, c) repetitions or a 3×3 matrix."""
    matrix = np.asarray(supercell, dtype=np.int64)
    if matrix.shape == (3,):
        matrix = np.diag(matrix)
    if matrix.shape != (3, 3) or round(abs(np.linalg.det(matrix))) < 1:
        raise ValueError(f"supercell must be 3 positive repetitions or a 3×3 matrix: {supercell}")
    return matrix


@dataclass
class Phonons:
    """Force constants of a supercell and everything derived from them."""

    unitcell: Atoms
    supercell: Atoms
    matrix: np.ndarray  # (3, 3) int, supercell = matrix @ unitcell.cell (ASE's convention)
    fc: np.ndarray  # (N_unit, N_s, 3, 3) eV/Å²: Φ(p_κ, j), rows of the unit cell's atoms
    symprec: float = 1e-5
    _tables: tuple = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self._tables = _image_tables(self.unitcell, self.supercell, self.symprec)

    # -- dynamical matrix and frequencies -------------------------------------------------
    def dynamical_matrix(self, qpoints: np.ndarray) -> np.ndarray:
        """D(q), (n_q, 3N, 3N) complex, eV/(Å²·amu), Hermitian."""
        kappa, rep_of, vectors, weights = self._tables
        q = np.atleast_2d(np.asarray(qpoints, dtype=np.float64))
        q_cart = q @ self.unitcell.cell.reciprocal()
        # phase[q, (κ, j)] = Σ_images w·exp(2πi q·d) for the pair (p_κ, j)
        phases = np.einsum("pk,pkq->qp", weights, np.exp(2j * np.pi * (vectors @ q_cart.T)))
        phases = phases.reshape(len(q), len(rep_of), -1)  # (n_q, N_unit, N_s)
        n = len(self.unitcell)
        masses = self.unitcell.get_masses()
        blocks = self.fc  # (N_unit, N_s, 3, 3)
        dyn = np.zeros((len(q), n, 3, n, 3), dtype=complex)
        for k in range(n):
            columns = kappa == k
            dyn[:, :, :, k, :] = np.einsum(
                "qij,ijab->qiab", phases[:, :, columns], blocks[:, columns]
            )
        dyn /= np.sqrt(np.outer(masses, masses))[None, :, None, :, None]
        dyn = dyn.reshape(len(q), 3 * n, 3 * n)
        return 0.5 * (dyn + np.conj(dyn.transpose(0, 2, 1)))

    def frequencies(self, qpoints: np.ndarray) -> np.ndarray:
        """ν(q) in THz, (n_q, 3N), ascending; imaginary modes as negative numbers."""
        q = np.atleast_2d(np.asarray(qpoints, dtype=np.float64))
        pairs, images = self._tables[3].shape  # the phase table is (n_q, pairs, images)
        step = max(1, 2_000_000 // (pairs * images))
        eigenvalues = [
            np.linalg.eigvalsh(self.dynamical_matrix(q[start : start + step]))
            for start in range(0, len(q), step)
        ]
        return signed_sqrt(np.concatenate(eigenvalues)) * OMEGA_TO_THZ

    # -- band structure, DOS, thermodynamics ----------------------------------------------
    def band_structure(self, path: str | None = None, npoints: int = 200) -> dict:
        """Frequencies along the standard path of the lattice (ASE's ``cell.bandpath``)."""
        bandpath = self.unitcell.cell.bandpath(path, npoints=npoints)
        x, special_x, labels = bandpath.get_linear_kpoint_axis()
        # a break in the path ("...K,U...") puts two labels at one x: show them as "K|U"
        merged_x, merged = [special_x[0]], [labels[0]]
        for sx, label in zip(special_x[1:], labels[1:], strict=True):
            if np.isclose(sx, merged_x[-1]):
                merged[-1] += "|" + label
            else:
                merged_x.append(sx)
                merged.append(label)
        return {
            "path": bandpath.path,
            "qpoints": bandpath.kpts,
            "x": x,
            "special_x": np.array(merged_x),
            "labels": merged,
            "special_points": {k: v.tolist() for k, v in bandpath.special_points.items()},
            "frequencies": self.frequencies(bandpath.kpts),
        }

    def mesh_frequencies(self, mesh=(20, 20, 20)) -> np.ndarray:
        """ν on a Γ-centred q-mesh, (Π mesh, 3N) THz."""
        axes = [np.arange(m) / m for m in mesh]
        return self.frequencies(np.array(list(itertools.product(*axes))))

    def dos(self, mesh=(20, 20, 20), sigma: float = 0.1, points: int = 400) -> dict:
        """Phonon DOS (states/THz per unit cell, integrating to 3N) with Gaussian smearing."""
        nu = self.mesh_frequencies(mesh).ravel()
        grid = np.linspace(min(nu.min(), 0.0) - 3 * sigma, nu.max() + 3 * sigma, points)
        density = np.zeros(points)
        for start in range(0, len(nu), 20_000):
            chunk = nu[start : start + 20_000]
            density += np.exp(-0.5 * ((grid[:, None] - chunk[None, :]) / sigma) ** 2).sum(axis=1)
        density /= sigma * np.sqrt(2 * np.pi) * len(nu) / (3 * len(self.unitcell))
        return {"frequency": grid, "dos": density, "min_frequency": float(nu.min())}

    def thermal_properties(
        self, temperatures, mesh=(20, 20, 20), cutoff: float = 1e-4
    ) -> dict[str, np.ndarray]:
        """Harmonic F, U (kJ/mol), S, C_v (J/K/mol) per mole of unit cells, as phonopy reports.

        Modes with ν ≤ ``cutoff`` THz (the acoustic modes at Γ, imaginary modes) are left out.
        """
        nu = self.mesh_frequencies(mesh)
        energies = nu[nu > cutoff] * THZ_TO_EV  # eV
        weight = 1.0 / len(nu)
        temps = np.atleast_1d(np.asarray(temperatures, dtype=np.float64))
        ev_to_kj_mol = units._e * units._Nav / 1000.0
        out = {k: np.zeros_like(temps) for k in ("free_energy", "internal_energy", "entropy")}
        out["heat_capacity"] = np.zeros_like(temps)
        zpe = 0.5 * energies.sum() * weight
        for t_index, t in enumerate(temps):
            if t <= 0:
                out["free_energy"][t_index] = out["internal_energy"][t_index] = zpe * ev_to_kj_mol
                continue
            x = energies / (units.kB * t)
            bose = 1.0 / np.expm1(x)
            u = zpe + weight * np.sum(energies * bose)
            s = units.kB * weight * np.sum(x * bose - np.log(-np.expm1(-x)))
            cv = units.kB * weight * np.sum(x**2 * np.exp(x) * bose**2)
            out["internal_energy"][t_index] = u * ev_to_kj_mol
            out["free_energy"][t_index] = (u - t * s) * ev_to_kj_mol
            out["entropy"][t_index] = s * ev_to_kj_mol * 1000.0
            out["heat_capacity"][t_index] = cv * ev_to_kj_mol * 1000.0
        out["temperature"] = temps
        return out

    @property
    def representatives(self) -> np.ndarray:
        """Supercell index p_κ of each unit-cell atom κ (the rows held in ``fc``)."""
        return self._tables[1]

    def full_force_constants(self) -> np.ndarray:
        """(N_s, N_s, 3, 3): every row, by lattice translation of the unit cell's rows.

        Atom i = (κ, l) sees the supercell as p_κ does, shifted by t = r_i − r_{p_κ}:
        Φ(i, T_t(j)) = Φ(p_κ, j) with T_t(j) the atom at r_j + t (modulo the supercell).
        """
        kappa, rep_of = self._tables[0], self._tables[1]
        positions = self.supercell.positions
        cell = self.supercell.cell.array
        inverse = np.linalg.inv(cell)
        n = len(positions)
        full = np.zeros((n, n, 3, 3))
        for i in range(n):
            shift = positions[i] - positions[rep_of[kappa[i]]]
            diff = (positions[:, None, :] + shift - positions[None, :, :]) @ inverse
            diff -= np.round(diff)
            target = np.argmin(np.linalg.norm(diff @ cell, axis=-1), axis=1)
            full[i, target] = self.fc[kappa[i]]
        return full

    # -- phonopy interoperability ---------------------------------------------------------
    def phonopy_order(self) -> np.ndarray:
        """Index of each phonopy supercell atom in our supercell."""
        phonon = self._phonopy_skeleton()
        theirs = phonon.supercell.scaled_positions
        ours = self.supercell.get_scaled_positions(wrap=True)
        diff = theirs[:, None, :] - ours[None, :, :]
        diff -= np.round(diff)
        order = np.argmin(np.linalg.norm(diff @ self.supercell.cell.array, axis=-1), axis=1)
        if len(set(order.tolist())) != len(order):
            raise ValueError("could not match phonopy's supercell atoms to ours")
        return order

    def _phonopy_skeleton(self):
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms

        unit = PhonopyAtoms(
            symbols=self.unitcell.get_chemical_symbols(),
            cell=self.unitcell.cell.array,
            scaled_positions=self.unitcell.get_scaled_positions(),
            masses=self.unitcell.get_masses(),
        )
        # phonopy's supercell matrix acts on column vectors: its M is our matrix transposed
        return Phonopy(unit, self.matrix.T, primitive_matrix=np.eye(3), symprec=self.symprec)

    def to_phonopy(self):
        """A ``phonopy.Phonopy`` object (unit cell = primitive) carrying these force constants."""
        phonon = self._phonopy_skeleton()
        order = self.phonopy_order()
        phonon.force_constants = self.full_force_constants()[np.ix_(order, order)]
        return phonon

    def write_phonopy(self, directory: str | Path) -> list[Path]:
        """FORCE_CONSTANTS (phonopy's text format, phonopy's atom order) + phonopy_params.yaml."""
        from phonopy.file_IO import write_FORCE_CONSTANTS

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        phonon = self.to_phonopy()
        fc_path = directory / "FORCE_CONSTANTS"
        write_FORCE_CONSTANTS(phonon.force_constants, filename=fc_path)
        params = directory / "phonopy_params.yaml"
        phonon.save(filename=params, settings={"force_constants": True})
        return [fc_path, params]


def compute_phonons(
    unitcell: Atoms,
    source: Source,
    supercell=(3, 3, 3),
    *,
    method: str = "auto",
    delta: float = 0.01,
    progress: bool = False,
) -> Phonons:
    """Supercell force constants of ``unitcell`` from a model (autograd) or ASE calculator.

    Only the rows of one unit cell's atoms are computed (the rest follow by translation):
    3·N_unit Hessian-vector products, or 6·N_unit displaced force calls.
    """
    matrix = supercell_matrix(supercell)
    if not np.all(unitcell.pbc):
        raise ValueError("phonons need a structure periodic in all three directions")
    big = make_supercell(unitcell, matrix, wrap=True)
    phonons = Phonons(
        unitcell=unitcell.copy(), supercell=big, matrix=matrix, fc=np.zeros((0, len(big), 3, 3))
    )
    rows = force_constants(
        big,
        source,
        indices=phonons.representatives,
        method=method,
        delta=delta,
        progress=progress,
    )
    phonons.fc = rows.reshape(len(unitcell), 3, len(big), 3).transpose(0, 2, 1, 3).copy()
    return phonons


def _image_tables(unitcell: Atoms, supercell: Atoms, symprec: float):
    """κ_j, representatives p_κ and the shortest-image vectors / weights for each (κ, j).

    Returns (kappa (N_s,), rep_of (N_unit,), vectors (N_unit·N_s, n_img, 3),
    weights (N_unit·N_s, n_img)) with zero weight on images that are not shortest.
    """
    unit_cell = unitcell.cell.array
    inv_unit = np.linalg.inv(unit_cell)
    pos_s = supercell.positions
    n_unit = len(unitcell)
    # κ_j: the unit-cell atom that j is a lattice translation of
    frac = (pos_s[:, None, :] - unitcell.positions[None, :, :]) @ inv_unit  # (N_s, N_unit, 3)
    mismatch = np.linalg.norm((frac - np.round(frac)) @ unit_cell, axis=-1)
    kappa = np.argmin(mismatch, axis=1)
    if np.any(mismatch[np.arange(len(pos_s)), kappa] > 1e-4):
        raise ValueError("supercell atoms are not lattice translations of unit-cell atoms")
    rep_of = np.array([np.flatnonzero(kappa == k)[0] for k in range(n_unit)])
    if len(pos_s) != n_unit * round(abs(np.linalg.det(supercell.cell.array @ inv_unit))):
        raise ValueError("supercell atom count does not match the supercell volume")

    reduced, _ = minkowski_reduce(supercell.cell.array)
    shifts = np.array(list(itertools.product(range(-2, 3), repeat=3))) @ reduced  # (125, 3)
    inv_reduced = np.linalg.inv(reduced)
    d0 = pos_s[None, :, :] - pos_s[rep_of][:, None, :]  # (N_unit, N_s, 3)
    d0 = d0 - np.round(d0 @ inv_reduced) @ reduced
    candidates = d0[:, :, None, :] + shifts[None, None, :, :]  # (N_unit, N_s, 125, 3)
    lengths = np.linalg.norm(candidates, axis=-1)
    shortest = lengths <= lengths.min(axis=-1, keepdims=True) + symprec
    multiplicity = shortest.sum(axis=-1, keepdims=True)
    weights = np.where(shortest, 1.0 / multiplicity, 0.0)
    keep = int(multiplicity.max())
    # keep only the first `keep` images per pair (sorted so shortest come first)
    order = np.argsort(~shortest, axis=-1, kind="stable")[..., :keep]
    vectors = np.take_along_axis(candidates, order[..., None], axis=2)
    weights = np.take_along_axis(weights, order, axis=2)
    n_pairs = n_unit * len(pos_s)
    return (
        kappa,
        rep_of,
        vectors.reshape(n_pairs, keep, 3),
        weights.reshape(n_pairs, keep),
    )
