"""What the backbone hands to output heads: node features of every layer and the edge data."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from equipot.nn.species import Species


@dataclass
class BackboneFeatures:
    species: Species
    neighbors: Tensor  # (N, K) neighbour j of every slot (0 in empty slots)
    slot_vectors: Tensor  # (N, K, 3) r_ij per slot, Å (empty slots: beyond the cutoff)
    radial_basis: Tensor  # (N, K, num_radial) enveloped radial basis (0 beyond the cutoff)
    nodes: list[Tensor]  # h^(t) after every layer t, (N, (l_t + 1)², C)
    inv_avg_neighbors: float

    @property
    def scalars(self) -> Tensor:
        """(N, C) invariant features of the last layer (the richest many-body scalars)."""
        return self.nodes[-1][:, 0]
