"""The equipot model: an energy function of an :class:`~equipot.graph.AtomicGraph`.

Forces, stress, Hessians and everything else derive from this energy by autograd
(:mod:`equipot.physics.derivatives`); no layer contains force code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.data import chemical_symbols
from torch import Tensor, nn

from equipot.geometry.edges import edge_vectors
from equipot.graph import AtomicGraph
from equipot.model.config import ModelConfig
from equipot.model.layers import InteractionLayer
from equipot.nn.constants import Constants
from equipot.nn.edge_features import EdgeFeatures
from equipot.nn.linear import init_weight
from equipot.nn.neighborhood import pad_neighbors
from equipot.nn.species import Species


@dataclass
class ModelOutput:
    energy: Tensor  # (S,) eV per system
    atomic_energies: Tensor  # (N,) eV per atom


class EnergyModel(nn.Module):
    """E(graph): many-body E(3)-equivariant message passing (MACE class), see ModelConfig."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        n_el = len(c.elements)
        index = torch.full((119,), -1, dtype=torch.int64)
        index[torch.tensor(c.atomic_numbers)] = torch.arange(n_el)
        self.register_buffer("species_of_z", index, persistent=False)
        self.constants = Constants(e0=np.array([c.e0.get(e, 0.0) for e in c.elements]))

        self.embedding = nn.Parameter(init_weight(n_el, c.channels) * n_el**0.5)
        self.edge_features = EdgeFeatures(c.r_max, c.l_max, c.num_radial, c.envelope_exponent)
        self.layers = nn.ModuleList(
            InteractionLayer(
                num_elements=n_el,
                channels=c.channels,
                lmax_in=0 if t == 0 else c.feature_l_max,
                lmax_sh=c.l_max,
                lmax_out=c.feature_l_max if t < c.num_layers - 1 else 0,
                correlation=c.correlation,
                num_radial=c.num_radial,
                radial_hidden=list(c.radial_hidden),
                parity=c.parity,
                residual=t > 0,
                readout_hidden=c.readout_hidden if t == c.num_layers - 1 else None,
            )
            for t in range(c.num_layers)
        )

    def set_execution(self, *, kernels: bool, memory_efficient: bool) -> EnergyModel:
        """Choose how the same function is computed (results agree to rounding):

        * ``kernels``: fused CPU kernels for the tensor product and symmetric contraction
          (first derivatives; double derivatives fall back to the PyTorch reference). Turn
          off for training on forces, where every backward pass is differentiated again.
        * ``memory_efficient``: evaluate large systems in chunks of atoms and recompute them
          in the backward pass instead of storing per-edge intermediates.
        """
        self.edge_features.fused = kernels
        for layer in self.layers:
            layer.edge.tensor_product.use_kernel = kernels
            layer.node.product.use_kernel = kernels
            layer.memory_efficient = memory_efficient
        return self

    def save(self, path, extra: dict | None = None):
        """Write this model to a file (see :func:`equipot.model.io.save_model`)."""
        from equipot.model.io import save_model

        return save_model(self, path, extra)

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype

    def species(self, atomic_numbers: Tensor) -> Tensor:
        """Map atomic numbers to model element indices; unknown elements are an error."""
        if atomic_numbers.numel() and (atomic_numbers.min() < 1 or atomic_numbers.max() > 118):
            bad = int(torch.nonzero((atomic_numbers < 1) | (atomic_numbers > 118))[0])
            raise ValueError(f"atom {bad} has invalid atomic number {int(atomic_numbers[bad])}")
        species = self.species_of_z[atomic_numbers]
        if atomic_numbers.numel() and bool((species < 0).any()):
            bad = int(torch.nonzero(species < 0)[0])
            symbol = chemical_symbols[int(atomic_numbers[bad])]
            raise ValueError(
                f"atom {bad} is {symbol}, which this model does not know "
                f"(model elements: {', '.join(self.config.elements)})"
            )
        return species

    def forward(self, graph: AtomicGraph) -> ModelOutput:
        c = self.config
        if graph.cutoff and graph.cutoff < c.r_max - 1e-9:
            raise ValueError(
                f"graph built with cutoff {graph.cutoff} Å < model r_max {c.r_max} Å: "
                "neighbours would be missing"
            )
        n = graph.num_atoms
        species = Species.of(self.species(graph.atomic_numbers), len(c.elements))
        padded = pad_neighbors(graph.edge_index, n)
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.batch, graph.edge_index, graph.edge_shift
        )
        far = vectors.new_tensor([2.0 * c.r_max, 0.0, 0.0])  # empty slots: beyond the cutoff
        vectors = padded.scatter(vectors, fill=far)  # (N, K, 3)
        Y, radial, envelope = self.edge_features(vectors)  # (N,K,D), (N,K,n_radial), (N,K)
        inv_avg = 1.0 / c.avg_num_neighbors

        h = self.embedding[species.index].unsqueeze(1)  # (N, 1, C)
        interaction = torch.zeros(n, dtype=h.dtype, device=h.device)
        for layer in self.layers:
            h, y = layer(h, species, Y, radial, padded.neighbors, padded.counts, inv_avg)
            interaction = interaction + y
        coordination = envelope.sum(1) * inv_avg
        atomic = (
            self.constants.get("e0", h)[species.index]
            + c.scale * interaction
            + c.shift * coordination
        )
        if graph.num_systems == 1:
            energy = atomic.sum().unsqueeze(0)
        else:
            energy = torch.zeros(graph.num_systems, dtype=h.dtype, device=h.device)
            energy = energy.index_add(0, graph.batch, atomic)
        return ModelOutput(energy=energy, atomic_energies=atomic)
