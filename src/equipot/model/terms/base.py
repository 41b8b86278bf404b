"""The interface of extra energy terms: fixed physical contributions added to the atomic
energies of the network (short-range repulsion now; electrostatics, dispersion, ... later).

A term is an ``nn.Module`` with two ways to evaluate the same function:

* ``forward(inputs) -> (N,)`` atomic energies, differentiable in ``inputs.vectors`` (the edge
  vectors r_ij): the autograd path (training, Hessians, pure PyTorch execution);
* ``edge_gradient(inputs) -> ((N,), (E, 3))`` atomic energies and ∂E_term/∂r_ij per edge,
  without autograd: the path of the C++ inference engine, which returns ∂E/∂r_ij per edge, so
  a term only adds its own (forces and stress follow in ``physics/derivatives``). The default
  differentiates ``forward``; terms on the hot path override it with a kernel.

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

    def forward(self, inputs: TermInputs) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def edge_gradient(self, inputs: TermInputs) -> tuple[Tensor, Tensor]:
        """Atomic energies (N,) and ∂E/∂r_ij (E, 3), by autograd through :meth:`forward`."""
        with torch.enable_grad():
            vectors = inputs.vectors.detach().requires_grad_(True)
            atomic = self(TermInputs(inputs.graph, inputs.species, vectors))
            (grad,) = torch.autograd.grad(atomic.sum(), vectors, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(vectors)
        return atomic.detach(), grad
