"""Rigid-body modes and their projection (shared by vibrations, relaxations and MD tools).

For N atoms at positions r with masses m, the rigid-body displacements are the three
translations t_k (every atom moves by e_k) and — for a free molecule — the three infinitesimal
rotations ω_k × (r − r_com). In mass-weighted coordinates q = √m·x these become √m·t_k and
√m·(ω_k × (r − r_com)). A linear molecule has only two independent rotations; the basis returned
here is orthonormalised by SVD, so its size adapts (6, 5, or 3 for a crystal).
"""

from __future__ import annotations

import numpy as np


def rigid_body_modes(
    positions: np.ndarray,
    masses: np.ndarray | None = None,
    *,
    rotations: bool = True,
    tolerance: float = 1e-8,
) -> np.ndarray:
    """Orthonormal basis (k, 3N) of rigid translations (and rotations, if ``rotations``).

    With ``masses`` the modes are expressed in mass-weighted coordinates (for mass-weighted
    Hessians); without, in Cartesian coordinates.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n = len(positions)
    weights = np.ones(n) if masses is None else np.sqrt(np.asarray(masses, dtype=np.float64))
    centre = np.average(positions, axis=0, weights=None if masses is None else masses)
    modes = []
    for k in range(3):
        axis = np.zeros(3)
        axis[k] = 1.0
        modes.append((np.tile(axis, (n, 1)) * weights[:, None]).ravel())
        if rotations:
            modes.append((np.cross(axis, positions - centre) * weights[:, None]).ravel())
    u, s, _ = np.linalg.svd(np.array(modes).T, full_matrices=False)
    return u[:, s > tolerance * max(s[0], 1.0)].T


def project_out(vector_or_matrix: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Remove the span of ``modes`` (rows, orthonormal) from a vector (3N,) or matrix (3N, 3N).

    A matrix is projected from both sides, P·H·P with P = 1 − Σ_k m_k m_kᵀ.
    """
    projector = np.eye(modes.shape[1]) - modes.T @ modes
    x = np.asarray(vector_or_matrix, dtype=np.float64)
    if x.ndim == 1:
        return projector @ x
    return projector @ x @ projector
