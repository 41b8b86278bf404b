"""Coulomb (or Yukawa) energy of point or Gaussian charges: one entry point, three methods.

    E_s = ½ k_e Σ_{i,j ∈ s} Σ'_n q_i q_j v(|r_j − r_i + n·cell|)      (n = 0 only if open)

(the prime leaves out i = j at n = 0), computed per system of a batch as atomic energies
E_i = ½ k_e q_i φ_i:

* ``direct``: all pairs, for open boundaries (molecules, clusters);
* ``ewald``: real-space pairs within the cutoff + reciprocal sum (torch-pme) + self and
  background terms, for 3D-periodic cells of any shape (and slabs);
* ``pme``: the same with the reciprocal sum on a mesh (smooth PME, O(N log N));
* ``auto``: ``ewald`` for small periodic systems, ``pme`` above :data:`PME_ABOVE_ATOMS` atoms.

``ewald``, ``pme`` and ``auto`` name the method for periodic systems; open systems (also
within a batch) are always summed directly.

The splitting η and the cutoffs follow from ``accuracy`` (relative size of the neglected
terms, e^{−x²}): real-space cutoff r_c = √2 η x, reciprocal cutoff k_c = √2 x / η. With
Gaussian charges and no ``cutoff`` the split is η = s and there are no real-space terms at
all. Slabs (two periodic directions) are summed as 3D cells with their vacuum plus the
slab-dipole correction (:mod:`~.slab`); one periodic direction is refused. Everything is
differentiable: forces, stress and Hessians come from autograd (see
:func:`coulomb_energy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from equipot.electrostatics.ewald import ewald_reciprocal
from equipot.electrostatics.kernels import COULOMB_CONSTANT, PairKernel, decay_arguments
from equipot.electrostatics.pme import default_oversampling, mesh_shape, pme_reciprocal
from equipot.electrostatics.realspace import (
    direct_potential,
    periodic_pairs,
    short_range_potential,
)
from equipot.electrostatics.slab import open_axis, slab_potential

if TYPE_CHECKING:
    from ase import Atoms

    from equipot.graph import AtomicGraph

Method = Literal["auto", "ewald", "pme", "direct"]
PME_ABOVE_ATOMS = 1000
DEFAULT_CUTOFF = 8.0  # Å, real-space cutoff for point charges


@dataclass(frozen=True)
class CoulombOptions:
    """How to sum (module docstring). ``cutoff`` (Å) / ``split`` (η, Å) override the
    defaults; ``order`` and ``oversampling`` set the PME mesh (:mod:`~.pme`)."""

    method: Method = "auto"
    smearing: float | None = None
    kappa: float = 0.0
    accuracy: float = 1e-6
    cutoff: float | None = None
    split: float | None = None
    order: int = 6
    oversampling: float | None = None  # default: from accuracy and order (pme.oversampling)

    @property
    def kernel(self) -> PairKernel:
        return PairKernel(self.smearing, self.kappa)

    def splitting(self) -> tuple[float, float, float]:
        """(η, real-space cutoff, reciprocal cutoff k_c)."""
        x = decay_arguments(self.accuracy)
        kernel = self.kernel
        if self.split is not None:
            eta = self.split
        elif self.cutoff is None and self.smearing is not None:
            eta = self.smearing
        else:
            eta = kernel.default_split(self.cutoff or DEFAULT_CUTOFF, self.accuracy)
        kernel.check_split(eta)
        if kernel.short_range_vanishes(eta):
            cutoff = 0.0
        else:
            cutoff = self.cutoff if self.cutoff is not None else math.sqrt(2.0) * eta * x
        return eta, cutoff, math.sqrt(2.0) * x / eta


def coulomb_potentials(
    positions: Tensor,
    charges: Tensor,
    cell: Tensor,
    pbc: Tensor,
    n_atoms: list[int],
    options: CoulombOptions,
    pairs: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """φ_i (N,) in e/Å for a batch of systems (``cell`` (S, 3, 3), ``pbc`` (S, 3)); with
    charges (N, M) (several charge vectors, direct and Ewald only), φ (N, M).

    ``pairs`` (i, j, distances), a full neighbour list over the batch reaching at least the
    real-space cutoff (e.g. a model's edges), is used for the real-space part instead of a
    neighbour search of our own.
    """
    kernel = options.kernel
    eta, cutoff, _ = options.splitting()
    parts = []
    start = 0
    for s, n in enumerate(n_atoms):
        where = slice(start, start + n)
        start += n
        periodic_directions = int(pbc[s].sum())
        if periodic_directions == 1:
            raise ValueError(
                f"system {s} is periodic along one direction only ({pbc[s].tolist()}): "
                "electrostatics handles open systems, slabs and 3D-periodic cells"
            )
        method = _method(options.method, periodic_directions > 0, n, s)
        if method == "direct":
            parts.append(direct_potential(positions[where], charges[where], kernel))
            continue
        phi = _reciprocal(positions[where], charges[where], cell[s], method, options)
        if periodic_directions == 2 and not options.kappa:
            axis = open_axis(pbc[s], cell[s], s)
            phi = phi + slab_potential(positions[where], charges[where], cell[s], axis)
        if cutoff > 0 and pairs is None:
            i, j, distances = periodic_pairs(positions[where], cell[s], cutoff)
            phi = phi + short_range_potential(charges[where], i, j, distances, kernel, eta, cutoff)
        parts.append(phi)
    phi = torch.cat(parts) if parts else charges.new_zeros(charges.shape)
    if cutoff > 0 and pairs is not None:
        i, j, distances = pairs
        sizes = torch.as_tensor(n_atoms, device=positions.device)
        periodic_atom = torch.repeat_interleave(pbc.sum(dim=1) >= 2, sizes)
        keep = periodic_atom[i]
        phi = phi + short_range_potential(
            charges, i[keep], j[keep], distances[keep], kernel, eta, cutoff
        )
    return phi


def _method(method: str, periodic: bool, n: int, s: int) -> str:
    if method == "auto":
        return "direct" if not periodic else ("pme" if n > PME_ABOVE_ATOMS else "ewald")
    if method not in ("direct", "ewald", "pme"):
        raise ValueError(f"unknown electrostatics method {method!r}: use auto, ewald, pme, direct")
    if method == "direct" and periodic:
        raise ValueError(f"system {s} is periodic: method 'direct' is for open systems only")
    return method if periodic else "direct"


def _reciprocal(positions, charges, cell, method: str, options: CoulombOptions) -> Tensor:
    if float(torch.linalg.det(cell.detach()).abs()) < 1e-9:
        raise ValueError("periodic system with a degenerate cell (zero volume)")
    kernel = options.kernel
    eta, _, k_cut = options.splitting()
    if method == "ewald":
        return ewald_reciprocal(positions, charges, cell, kernel, eta, k_cut)
    factor = options.oversampling or default_oversampling(options.accuracy, options.order)
    mesh = mesh_shape(cell, k_cut, options.order, factor)
    return pme_reciprocal(positions, charges, cell, kernel, eta, mesh, options.order)


def atomic_coulomb_energies(
    positions: Tensor,
    charges: Tensor,
    cell: Tensor,
    pbc: Tensor,
    n_atoms: list[int],
    options: CoulombOptions,
    pairs: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """E_i = ½ k_e q_i φ_i (N,) in eV (arguments as for :func:`coulomb_potentials`)."""
    phi = coulomb_potentials(positions, charges, cell, pbc, n_atoms, options, pairs)
    return 0.5 * COULOMB_CONSTANT * charges * phi


def coulomb_energy(
    system: Atoms | AtomicGraph,
    charges=None,
    method: Method = "auto",
    **options,
) -> Tensor:
    """Electrostatic energy in eV: a 0-d tensor for ASE ``Atoms``, (S,) for a graph.

    ``charges`` (N,) in e default to ``atoms.get_initial_charges()``; ``options`` are the
    fields of :class:`CoulombOptions` (``smearing``, ``kappa``, ``accuracy``, ``cutoff``,
    ``split``, ``order``, ``oversampling``). For forces and stress differentiate with
    respect to the graph's positions (and a strain of its cell), e.g. through
    :func:`equipot.predict` with :class:`~equipot.electrostatics.FixedCharges`.
    """
    settings = replace(CoulombOptions(**options), method=method)
    from equipot.graph import AtomicGraph

    if isinstance(system, AtomicGraph):
        if charges is None:
            raise ValueError("charges are required with an AtomicGraph")
        q = torch.as_tensor(charges, dtype=system.dtype, device=system.device)
        _check_charges(q, system.num_atoms)
        atomic = atomic_coulomb_energies(
            system.positions, q, system.cell, system.pbc, system.n_atoms.tolist(), settings
        )
        return torch.zeros(system.num_systems, dtype=q.dtype).index_add(0, system.batch, atomic)
    q = system.get_initial_charges() if charges is None else charges
    q = torch.as_tensor(np.asarray(q, dtype=np.float64))
    _check_charges(q, len(system))
    positions = torch.as_tensor(system.positions, dtype=torch.float64)
    cell = torch.as_tensor(system.cell.array, dtype=torch.float64).unsqueeze(0)
    pbc = torch.as_tensor(system.pbc).unsqueeze(0)
    return atomic_coulomb_energies(positions, q, cell, pbc, [len(system)], settings).sum()


def _check_charges(q: Tensor, n: int) -> None:
    if q.shape != (n,):
        raise ValueError(f"charges must have shape ({n},) (one per atom), got {tuple(q.shape)}")
    if not bool(torch.isfinite(q).all()):
        bad = int(torch.nonzero(~torch.isfinite(q))[0])
        raise ValueError(f"charge of atom {bad} is not finite ({float(q[bad])})")
