"""Force constants of a structure from an equipot model (exact autograd) or any ASE calculator.

The force-constant (Hessian) matrix is Φ_{ia,jb} = ∂²E/∂r_ia ∂r_jb in eV/Å², shape (3N, 3N).

* An equipot model (or an :class:`~equipot.EquipotCalculator`, or a model file) gives Φ exactly
  by autograd (:func:`equipot.hessian`).
* Any other ASE calculator gives Φ by central finite differences of the forces,
  Φ[:, k] = −(F(x + δ e_k) − F(x − δ e_k)) / (2δ) (``stencil=2``) or the five-point rule
  (``stencil=4``, error O(δ⁴)), symmetrised as (Φ + Φᵀ)/2.

Mass weighting, D = M^{-1/2} Φ M^{-1/2}, and the removal of rigid-body modes
(:mod:`equipot.physics.modes`) complete what vibrations and phonons need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from equipot.calculator import EquipotCalculator
from equipot.model.energy_model import EnergyModel
from equipot.physics.modes import rigid_body_modes
from equipot.progress import progress_iter

Source = EnergyModel | BaseCalculator | str | Path
"""What every property routine accepts: a model, a model file, or any ASE calculator."""

# ω = √λ for an eigenvalue λ of the mass-weighted Hessian in eV/(Å²·amu); ν = ω / 2π.
OMEGA_TO_THZ = np.sqrt(units._e / units._amu) * 1e10 / (2 * np.pi) / 1e12  # ≈ 15.633302
THZ_TO_CM = 1e12 / (units._c * 100.0)  # ≈ 33.35641 cm⁻¹ per THz
THZ_TO_EV = units._hplanck * 1e12 / units._e  # h·ν in eV for ν = 1 THz


def resolve_source(
    source: Source, dtype: str = "float64"
) -> tuple[BaseCalculator, EnergyModel | None]:
    """(ASE calculator, model or None) for a model, a model file or an ASE calculator."""
    if isinstance(source, EquipotCalculator):
        return source, source.model
    if isinstance(source, BaseCalculator):
        return source, None
    if isinstance(source, (str, Path)):
        from equipot.model.io import load_model

        source = load_model(source)
    if isinstance(source, EnergyModel):
        calc = EquipotCalculator(source, dtype=dtype)
        return calc, calc.model
    raise TypeError(f"expected an equipot model, a model file or an ASE calculator, got {source!r}")


def as_calculator(source: Source) -> BaseCalculator:
    """The ASE calculator for ``source`` (models are wrapped in an EquipotCalculator)."""
    return resolve_source(source)[0]


def with_calculator(atoms: Atoms, source: Source) -> Atoms:
    """A copy of ``atoms`` with the calculator of ``source`` attached."""
    atoms = atoms.copy()
    atoms.calc = as_calculator(source)
    return atoms


def force_constants(
    atoms: Atoms,
    source: Source,
    *,
    indices=None,
    method: str = "auto",
    delta: float = 0.005,
    stencil: int = 2,
    progress: bool = False,
) -> np.ndarray:
    """Φ = ∂²E/∂r∂r of ``atoms``: (3N, 3N) float64 in eV/Å², symmetric.

    With ``indices`` (atom indices) only their rows are computed, (3·len(indices), 3N): all a
    crystal's phonons need is the rows of one unit cell of a supercell, at a fraction of the
    cost (autograd: one Hessian-vector product per row; finite differences: displacements of
    those atoms only).

    ``method``: ``"auto"`` (autograd for equipot models, finite differences otherwise),
    ``"autograd"`` or ``"finite-difference"``. ``delta`` (Å) and ``stencil`` (2 or 4 points)
    apply to finite differences only.
    """
    calc, model = resolve_source(source)
    if method == "auto":
        method = "autograd" if model is not None else "finite-difference"
    if method not in ("autograd", "finite-difference"):
        raise ValueError(f"unknown Hessian method {method!r} (auto, autograd, finite-difference)")
    if method == "autograd" and model is None:
        raise ValueError(
            f"an autograd Hessian needs an equipot model; {type(calc).__name__} has none "
            "(use method='finite-difference')"
        )
    if method == "autograd":
        if indices is None:
            from equipot import hessian

            phi = hessian(model, atoms)
            return 0.5 * (phi + phi.T)
        return _autograd_rows(atoms, model, np.asarray(indices, dtype=np.int64))
    return finite_difference_force_constants(
        atoms, calc, indices=indices, delta=delta, stencil=stencil, progress=progress
    )


def _autograd_rows(atoms: Atoms, model: EnergyModel, indices: np.ndarray) -> np.ndarray:
    """Rows of Φ for ``indices`` by Hessian-vector products with unit vectors (Φ = Φᵀ)."""
    import torch

    from equipot.calculator import atoms_to_graph
    from equipot.physics.derivatives import hessian_vector_product

    parameter = next(model.parameters())
    graph = atoms_to_graph(atoms, model.config.r_max, parameter.dtype, parameter.device)
    vectors = torch.zeros(3 * len(indices), len(atoms), 3, dtype=parameter.dtype)
    for row, atom in enumerate(np.repeat(indices, 3)):
        vectors[row, atom, row % 3] = 1.0
    with torch.enable_grad():
        rows = hessian_vector_product(model, graph, vectors.to(parameter.device))
    return rows.detach().cpu().double().numpy().reshape(3 * len(indices), -1)


_STENCILS = {2: ((1, 0.5), (-1, -0.5)), 4: ((2, -1 / 12), (1, 2 / 3), (-1, -2 / 3), (-2, 1 / 12))}


def finite_difference_force_constants(
    atoms: Atoms,
    calc: BaseCalculator,
    *,
    indices=None,
    delta: float = 0.005,
    stencil: int = 2,
    progress: bool = False,
) -> np.ndarray:
    """Φ by central differences of forces (any calculator that gives forces).

    Displacing coordinate k gives column k, −∂F/∂x_k, which is row k since Φ is symmetric;
    the full matrix is symmetrised, (Φ + Φᵀ)/2.
    """
    if stencil not in _STENCILS:
        raise ValueError(f"stencil must be 2 or 4 (points), got {stencil}")
    work = atoms.copy()
    work.calc = calc
    reference = atoms.positions.copy()
    atoms_to_move = np.arange(len(atoms)) if indices is None else np.asarray(indices)
    coordinates = [3 * a + k for a in atoms_to_move for k in range(3)]
    rows = np.zeros((len(coordinates), 3 * len(atoms)))
    for row, k in enumerate(
        progress_iter(coordinates, "finite differences", enabled=progress, leave=False)
    ):
        for step, weight in _STENCILS[stencil]:
            displaced = reference.copy()
            displaced[k // 3, k % 3] += step * delta
            work.positions = displaced
            rows[row] -= weight * work.get_forces().reshape(-1)
    rows /= delta
    return 0.5 * (rows + rows.T) if indices is None else rows


def mass_weighted(phi: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """D = M^{-1/2} Φ M^{-1/2} in eV/(Å²·amu), each mass repeated for x, y, z."""
    inv_sqrt = 1.0 / np.sqrt(np.repeat(np.asarray(masses, dtype=np.float64), 3))
    return phi * inv_sqrt[:, None] * inv_sqrt[None, :]


def internal_basis(atoms: Atoms, rotations: bool | None = None) -> np.ndarray:
    """Orthonormal basis (3N, 3N − k) of mass-weighted displacements free of rigid motion.

    Translations are always removed; rotations only for a structure with no periodic direction
    (``rotations=None``) or when asked explicitly.
    """
    if rotations is None:
        rotations = not bool(np.any(atoms.pbc))
    rigid = rigid_body_modes(atoms.positions, atoms.get_masses(), rotations=rotations)
    # the complement of the rigid modes: left singular vectors beyond the rank of `rigid`
    u, _, _ = np.linalg.svd(rigid.T, full_matrices=True)
    return u[:, rigid.shape[0] :]


def signed_sqrt(eigenvalues: np.ndarray) -> np.ndarray:
    """√λ with the sign of λ: imaginary modes come out as negative frequencies."""
    return np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues))
