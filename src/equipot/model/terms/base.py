"""The interface of extra energy terms: fixed physical contributions added to the atomic
energies of the network (short-range repulsion now; electrostatics, dispersion, ... later).

A term is an ``nn.Module`` with two ways to evaluate the same function:

* ``forward(inputs) -> (N,)`` atomic energies, differentiable in ``inputs.vectors`` (the edge
  vectors r_ij): the autograd path (training, Hessians, pure PyTorch execution);
* ``edge_gradient(inputs) -> ((N,), (E, 3))`` atomic energies and ∂E_term/∂r_ij per edge,
  without autograd: the path of the C++ inference engine, which returns ∂E/∂r_ij per edge, so
  a term only adds its own (forces and stress follow in ``physics/derivatives``). The default
  differentiates ``forward``; terms on the hot path override it with a kernel;
* ``edge_hessian_vectors(inputs, tangents) -> (B, E, 3)``: the tangent of ∂E_term/∂r_ij along
  B edge directions, for the second-order engine's exact Hessians (autograd on the edge vectors;
  one 3×3 block per edge for ``pairwise`` terms).

To add a term, put a module in this package with a function ``build(config) -> EnergyTerm |
None`` (``None``: the config does not ask for it); :func:`build_terms` finds it. Terms are
keyed by their ``name`` in the model (``EnergyModel.terms``), so learnable parameters of a term
have stable names in model files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from equipot.graph import AtomicGraph


@dataclass
class TermInputs:
    graph: AtomicGraph
    species: Tensor  # (N,) model element index of every atom
    vectors: Tensor  # (E, 3) edge vectors r_ij = r_j − r_i + S·cell (edge_index order)


class EnergyTerm(nn.Module):
    name: str = "term"
    # E_term = Σ_e φ_e(r_e): each edge's gradient depends on its own vector only, so the
    # Hessian in edge space is block diagonal (one 3×3 block per edge).
    pairwise: bool = False

    def forward(self, inputs: TermInputs) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def engine_tensors(self) -> dict[str, Tensor] | None:
        """The term's parameters as named tensors for hosts of the C++ engine without Python
        (the LAMMPS plugin reads them as ``term.<name>.<key>``, ``kernels/engine_tensors.h``);
        ``None``: no such host can evaluate this term (``equipot lammps export`` refuses it)."""
        return None

    def edge_gradient(self, inputs: TermInputs) -> tuple[Tensor, Tensor]:
        """Atomic energies (N,) and ∂E/∂r_ij (E, 3), by autograd through :meth:`forward`."""
        with torch.enable_grad():
            vectors = inputs.vectors.detach().requires_grad_(True)
            atomic = self(TermInputs(inputs.graph, inputs.species, vectors))
            (grad,) = torch.autograd.grad(atomic.sum(), vectors, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(vectors)
        return atomic.detach(), grad

    def edge_hessian_vectors(self, inputs: TermInputs, tangents: Tensor) -> Tensor:
        """Σ_f ∂²E/∂r_e∂r_f · r'_f for B edge directions ``tangents`` (B, E, 3) → (B, E, 3),
        exact, by autograd on the edge vectors: for ``pairwise`` terms from the 3×3 block of
        every edge (three backward passes for any B), otherwise one double backward per
        direction."""
        with torch.enable_grad():
            vectors = inputs.vectors.detach().requires_grad_(True)
            atomic = self(TermInputs(inputs.graph, inputs.species, vectors))
            if not atomic.requires_grad:  # no edge in range: constant energy
                return torch.zeros_like(tangents)
            (grad,) = torch.autograd.grad(atomic.sum(), vectors, create_graph=True)
            if not grad.requires_grad:  # linear in the edge vectors
                return torch.zeros_like(tangents)
            if self.pairwise:
                rows = [
                    _zeros_if_none(
                        torch.autograd.grad(
                            grad[:, k].sum(), vectors, retain_graph=True, allow_unused=True
                        )[0],
                        vectors,
                    )
                    for k in range(3)
                ]
                block = torch.stack(rows, 1).detach()  # (E, 3, 3): ∂g_ek/∂r_el
                return torch.einsum("ekl,bel->bek", block, tangents.to(block))
            out = [
                _zeros_if_none(
                    torch.autograd.grad(
                        grad, vectors, grad_outputs=t.to(grad), retain_graph=True, allow_unused=True
                    )[0],
                    vectors,
                )
                for t in tangents
            ]
            return torch.stack(out).detach()


def _zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad
