"""One message-passing layer: interaction (TP over neighbours) → product basis → update."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from equipot.nn.edge_block import EdgeBlock
from equipot.nn.linear import IrrepsLinear
from equipot.nn.node_update import NodeUpdate
from equipot.nn.species import Species


class InteractionLayer(nn.Module):
    """h^(t) → h^(t+1) and the layer's atomic-energy readout y^(t+1).

    h̃ = W_up h                                       (channel mixing per l)
    A_i = (1/n̄) Σ_j Σ_p W_p R_p(r_ij) ⊗_CG (h̃_j, Y(r̂_ij))   (EdgeTensorProduct + path mixing)
    A_i ← ceiling(A_i)                              (optional: nn/feature_ceiling)
    B_i = SymmetricContraction_{z_i}(A_i)            (many-body, correlation ν)
    h_i' = W_out B_i + W_sc[z_i] h_i                 (species-aware residual, not in layer 0)
    y_i = readout(h_i' scalars)                      (linear; an MLP in the last layer)
    """

    def __init__(
        self,
        *,
        num_elements: int,
        channels: int,
        lmax_in: int,
        lmax_sh: int,
        lmax_out: int,
        correlation: int,
        num_radial: int,
        radial_hidden: list[int],
        parity: bool,
        residual: bool,
        readout_hidden: int | None,
    ):
        super().__init__()
        # Layer 0 reads the element embedding, itself a learnable linear map: no linear_up.
        self.linear_up = IrrepsLinear(lmax_in, channels, channels) if lmax_in > 0 else None
        self.edge = EdgeBlock(channels, lmax_in, lmax_sh, parity, num_radial, radial_hidden)
        self.node = NodeUpdate(
            num_elements=num_elements,
            channels=channels,
            lmax_in=lmax_in,
            lmax_a=self.edge.lmax_out,
            lmax_out=lmax_out,
            correlation=correlation,
            parity=parity,
            residual=residual,
            readout_hidden=readout_hidden,
        )

    def forward(
        self,
        h: Tensor,
        species: Species,
        Y: Tensor,
        radial_basis: Tensor,
        neighbors: Tensor,
        counts: Tensor,
        inv_avg_neighbors: float,
        ceiling: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``ceiling``: A → A held below the training data's block norms (nn/feature_ceiling)."""
        h_up = h if self.linear_up is None else self.linear_up(h)
        k = neighbors.shape[1]
        A = self._map_rows(
            self.edge,
            max(1, self.chunk_slots // k),
            (Y, radial_basis, neighbors, counts),
            (h_up, inv_avg_neighbors),
        )
        if ceiling is not None:
            A = ceiling(A)
        return self._map_rows(
            self.node, self.chunk_atoms, (A, h, species.index), (species.present,)
        )

    # Inference on large systems (``memory_efficient``, set on inference copies): evaluate the
    # layer in chunks of centre atoms and recompute each chunk during the backward pass
    # instead of storing its intermediates (radial MLP activations, R, R⊙h_j, pair products).
    # Memory then stays O(N) beyond the inputs, at the price of a second forward pass, and
    # every temporary stays small enough to be reused by the allocator.
    memory_efficient: bool = False
    chunk_slots: int = 16384  # neighbour slots per edge-block chunk
    chunk_atoms: int = 256  # atoms per node-update chunk

    def _map_rows(self, fn, rows: int, row_args: tuple, shared_args: tuple):
        """``fn(*row_args, *shared_args)``, in recomputed chunks of ``rows`` rows if enabled."""
        n = row_args[0].shape[0]
        if not self.memory_efficient or n <= rows:
            return fn(*row_args, *shared_args)
        parts = [
            checkpoint(
                fn, *(a[start : start + rows] for a in row_args), *shared_args, use_reentrant=False
            )
            for start in range(0, n, rows)
        ]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(p) for p in zip(*parts, strict=True))
        return torch.cat(parts)
