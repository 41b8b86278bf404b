"""The network sees no interatomic distance shorter than its training data contained.

Outside the data a many-body network is a high-degree polynomial of its inputs: a methyl
acetate model trained on 300 K MD put +5·10⁷ eV on the molecule compressed to 0.75 of its size
and +100 eV on one C–H bond at 0.87 Å (GFN2-xTB: +43 eV and +1.3 eV), all of it from the
second layer's features, which grow without bound once the radial functions are evaluated
at distances never seen. The floor holds the distance the network's radial functions read:
for each element pair (a, b) with shortest training distance f_ab,

    r̃(r) = r                                 r ≥ f
    r̃(r) = f − δ·tanh((f − r)/δ)             r < f,   δ = softness · f

so r̃ never drops below f − δ. The direction of the edge is kept (v → v·r̃/r): angles and the
spherical harmonics are unchanged, and equivariance is untouched (r̃ is a function of |v|).
r̃ is C² at f (r̃' = 1 and r̃'' = 0 on both sides), so forces and Hessians stay continuous.
Below the data the energy's distance dependence is the parameter-free terms' (ZBL
repulsion); the network contributes what it learned at the shortest distances it saw.

On every training frame r ≥ f, so r̃ = r exactly: training is unchanged, and the fused
engine paths (inference, second order, training step) apply whenever no edge is held
(:meth:`RadialFloor.holds`). The inference engine takes held edges too, with the chain rule
of v → v·r̃/r done here (:meth:`RadialFloor.slot_gradient`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from equipot.nn.constants import Constants

# The floor sits this fraction below the shortest training distance: distances recomputed in
# another dtype or order (float32 training, periodic images) must not fall a rounding error
# below it and be held.
FLOOR_MARGIN = 1e-5


def floor_from_shortest(shortest: dict[str, float]) -> dict[str, float]:
    """The floor of a model trained on data whose shortest distances are ``shortest``
    (``"A-B": Å``, the training statistics)."""
    return {key: d * (1.0 - FLOOR_MARGIN) for key, d in shortest.items() if d > 0.0}


def floor_table(elements: list[str], floor: dict[str, float]) -> np.ndarray:
    """(E, E) floor distances from ``"A-B": Å`` (either order); 0 where no floor is set."""
    index = {e: k for k, e in enumerate(elements)}
    table = np.zeros((len(elements), len(elements)))
    for key, value in floor.items():
        a, b = key.split("-", 1)
        table[index[a], index[b]] = table[index[b], index[a]] = float(value)
    return table


class RadialFloor(nn.Module):
    """v → v·r̃(|v|)/|v| per edge (module docstring); slots are (N, K, 3) with (N, K)
    neighbour indices (empty slots hold vectors beyond the cutoff: never held)."""

    def __init__(self, elements: list[str], floor: dict[str, float], softness: float):
        super().__init__()
        self.softness = float(softness)
        self.constants = Constants(floor=floor_table(elements, floor))

    def _pair_floor(self, vectors: Tensor, species: Tensor, neighbors: Tensor) -> Tensor:
        table = self.constants.get("floor", vectors)
        return table[species.unsqueeze(1), species[neighbors.clamp(min=0)]]

    def holds(self, vectors: Tensor, species: Tensor, neighbors: Tensor) -> bool:
        """Whether any edge is shorter than its floor (there r̃ ≠ r)."""
        floor = self._pair_floor(vectors, species, neighbors)
        return bool((torch.linalg.vector_norm(vectors, dim=-1) < floor).any())

    def holds_edges(self, vectors: Tensor, species: Tensor, edge_index: Tensor) -> bool:
        """:meth:`holds` for an edge list: vectors (E, 3), edge_index (2, E)."""
        table = self.constants.get("floor", vectors)
        floor = table[species[edge_index[0]], species[edge_index[1]]]
        return bool((torch.linalg.vector_norm(vectors, dim=-1) < floor).any())

    def _held_length(self, r: Tensor, floor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(r̃, dr̃/dr, mask of held edges)."""
        held = r < floor
        delta = (self.softness * floor).clamp(min=1e-12)
        t = torch.tanh(((floor - r) / delta).clamp(min=0.0))
        return torch.where(held, floor - delta * t, r), torch.where(held, 1 - t * t, 1.0), held

    def forward(self, vectors: Tensor, species: Tensor, neighbors: Tensor) -> Tensor:
        """The vectors the network reads (differentiable; identical where no edge is held)."""
        floor = self._pair_floor(vectors, species, neighbors)
        r = torch.linalg.vector_norm(vectors, dim=-1)
        length, _, held = self._held_length(r, floor)
        factor = torch.where(held, length / r.clamp(min=1e-12), 1.0)
        return vectors * factor.unsqueeze(-1)

    def slot_gradient(
        self, vectors: Tensor, species: Tensor, neighbors: Tensor, grad_held: Tensor
    ) -> Tensor:
        """∂E/∂v from ∂E/∂ṽ (both (N, K, 3)), ṽ = v·r̃/r:

        ∂E/∂v = (r̃/r)·g + (r̃' − r̃/r)(û·g) û       g = ∂E/∂ṽ, û = v/r
        """
        floor = self._pair_floor(vectors, species, neighbors)
        r = torch.linalg.vector_norm(vectors, dim=-1)
        length, slope, held = self._held_length(r, floor)
        ratio = torch.where(held, length / r.clamp(min=1e-12), 1.0)
        unit = vectors / r.clamp(min=1e-12).unsqueeze(-1)
        along = (unit * grad_held).sum(-1)
        radial = torch.where(held, slope - ratio, 0.0) * along
        return ratio.unsqueeze(-1) * grad_held + radial.unsqueeze(-1) * unit
