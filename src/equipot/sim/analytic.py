"""Analytic energy functions of an :class:`~equipot.graph.AtomicGraph` (tests, examples).

They have the same interface as an equipot model (``module(graph)`` → ``.energy`` (S,) and
``.atomic_energies`` (N,)), so :class:`~equipot.sim.potentials.ModelPotential` turns them into
potentials with forces, stress, Hessians and HVPs by the same autograd code as the model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equipot.graph import AtomicGraph
from equipot.model.energy_model import ModelOutput


def _output(graph: AtomicGraph, atomic: Tensor) -> ModelOutput:
    energy = atomic.new_zeros(graph.num_systems).index_add(0, graph.batch, atomic)
    return ModelOutput(energy=energy, atomic_energies=atomic)


class Harmonic(nn.Module):
    """Independent isotropic springs tethering every atom to a reference position:

        E = ½ Σ_i k_i |r_i − r⁰_i|²      (k: eV/Å², one per atom or one for all)

    A graph with ``B`` copies of the ``N`` reference atoms (a batch of systems, or the beads
    of a ring polymer) uses the same references for every copy. Atom i vibrates with
    ω_i = √(k_i/m_i), so mass-weighted Hessians and quantum energies are known exactly.
    """

    cutoff = 0.0  # no neighbours needed

    def __init__(self, reference: Tensor, spring: float | Tensor):
        super().__init__()
        reference = torch.as_tensor(reference, dtype=torch.float64)
        spring = torch.as_tensor(spring, dtype=torch.float64).expand(reference.shape[0])
        self.register_buffer("reference", reference.clone())
        self.register_buffer("spring", spring.clone())

    def forward(self, graph: AtomicGraph) -> ModelOutput:
        n = self.reference.shape[0]
        copies = graph.num_atoms // n
        if copies * n != graph.num_atoms:
            raise ValueError(f"graph has {graph.num_atoms} atoms, not a multiple of {n}")
        u = graph.positions - self.reference.repeat(copies, 1)
        atomic = 0.5 * self.spring.repeat(copies) * (u * u).sum(1)
        return _output(graph, atomic)


class LennardJones(nn.Module):
    """Shifted-force Lennard-Jones pairs (energy and force continuous at the cutoff):

    φ(r) = 4ε[(σ/r)¹² − (σ/r)⁶],  E = ½ Σ_{i≠j} [φ(r_ij) − φ(r_c) − (r_ij − r_c) φ'(r_c)]
    """

    def __init__(self, epsilon: float = 0.0104, sigma: float = 3.40, cutoff: float = 8.5):
        super().__init__()
        self.epsilon, self.sigma, self.cutoff = float(epsilon), float(sigma), float(cutoff)

    def _phi(self, r: Tensor) -> tuple[Tensor, Tensor]:
        s6 = (self.sigma / r) ** 6
        phi = 4.0 * self.epsilon * (s6 * s6 - s6)
        dphi = 4.0 * self.epsilon * (-12.0 * s6 * s6 + 6.0 * s6) / r
        return phi, dphi

    def forward(self, graph: AtomicGraph) -> ModelOutput:
        r = torch.linalg.vector_norm(graph.edge_vectors(), dim=1)
        rc = torch.tensor(self.cutoff, dtype=r.dtype, device=r.device)
        phi_c, dphi_c = self._phi(rc)
        inside = r < self.cutoff
        r_safe = torch.where(inside, r, rc)
        phi, _ = self._phi(r_safe)
        pair = torch.where(inside, phi - phi_c - (r_safe - rc) * dphi_c, 0.0)
        atomic = 0.5 * pair.new_zeros(graph.num_atoms).index_add(0, graph.edge_index[0], pair)
        return _output(graph, atomic)
