"""One message-passing layer: interaction (TP over neighbours) → product basis → update."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from equipot.nn.linear import ElementIrrepsLinear, IrrepsLinear, NormalizedSiLU, init_weight
from equipot.nn.product_basis import SymmetricContraction
from equipot.nn.radial import RadialMLP
from equipot.nn.species import Species
from equipot.nn.tensor_product import EdgeTensorProduct


class InteractionLayer(nn.Module):
    """h^(t) → h^(t+1) and the layer's atomic-energy readout y^(t+1).

    h̃ = W_up h                                       (channel mixing per l)
    A_i = (1/n̄) Σ_j Σ_p W_p R_p(r_ij) ⊗_CG (h̃_j, Y(r̂_ij))   (EdgeTensorProduct + path mixing)
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
        self.tensor_product = EdgeTensorProduct(lmax_in, lmax_sh, lmax_sh, parity)
        tp = self.tensor_product
        self.radial = RadialMLP(num_radial, radial_hidden, channels * tp.num_paths)
        self.path_mixing = nn.ParameterList(
            [nn.Parameter(init_weight(channels * count, channels)) for count in tp.paths_per_l]
        )
        self.product = SymmetricContraction(
            num_elements, channels, tp.lmax_out, lmax_out, correlation, parity
        )
        self.linear_out = IrrepsLinear(lmax_out, channels, channels)
        self.self_connection = (
            ElementIrrepsLinear(num_elements, min(lmax_in, lmax_out), channels, channels)
            if residual
            else None
        )
        self.lmax_out = lmax_out
        if readout_hidden is None:
            self.readout = nn.ParameterList([nn.Parameter(init_weight(channels, 1))])
        else:
            self.readout = nn.ParameterList(
                [
                    nn.Parameter(init_weight(channels, readout_hidden)),
                    nn.Parameter(init_weight(readout_hidden, 1)),
                ]
            )
        self.activation = NormalizedSiLU()

    def forward(
        self,
        h: Tensor,
        species: Species,
        Y: Tensor,
        radial_basis: Tensor,
        neighbors: Tensor,
        counts: Tensor,
        inv_avg_neighbors: float,
    ) -> tuple[Tensor, Tensor]:
        h_up = h if self.linear_up is None else self.linear_up(h)
        k = neighbors.shape[1]
        A = self._map_rows(
            self._edge_block,
            max(1, self.chunk_slots // k),
            (Y, radial_basis, neighbors, counts),
            (h_up, inv_avg_neighbors),
        )
        return self._map_rows(
            self._node_update, self.chunk_atoms, (A, h, species.index), (species.present,)
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

    def _node_update(
        self, A: Tensor, h: Tensor, species_index: Tensor, present: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        """h' = W_out·B(A) + W_sc[z]·h and the readout y, atom by atom."""
        species = Species(species_index, present)
        h_new = self.linear_out(self.product(A, species))
        if self.self_connection is not None:
            skip = self.self_connection(h, species)
            if skip.shape[1] < h_new.shape[1]:
                h_new = torch.cat([h_new[:, : skip.shape[1]] + skip, h_new[:, skip.shape[1] :]], 1)
            else:
                h_new = h_new + skip
        return h_new, self._read_out(h_new[:, 0])

    def _edge_block(
        self,
        Y: Tensor,
        radial_basis: Tensor,
        neighbors: Tensor,
        counts: Tensor,
        h_up: Tensor,
        inv_avg: float,
    ) -> Tensor:
        """A_i for the centre atoms of ``neighbors``: (N_chunk, (l_max+1)², C)."""
        n, k = neighbors.shape
        channels = h_up.shape[2]
        R = self.radial(radial_basis).view(n, k, -1, channels)
        columns = self.tensor_product(h_up, Y, R, neighbors, counts)  # (N, cols, C)
        out, start = [], 0
        # columns are ordered (L, M, path): each L block mixes (path, channel) → channel
        for L, (count, w) in enumerate(
            zip(self.tensor_product.paths_per_l, self.path_mixing, strict=True)
        ):
            width = (2 * L + 1) * count
            block = columns[:, start : start + width].reshape(n * (2 * L + 1), count * channels)
            out.append((block @ (w * inv_avg)).view(n, 2 * L + 1, channels))
            start += width
        return torch.cat(out, dim=1)

    def _read_out(self, scalars: Tensor) -> Tensor:
        *hidden, last = self.readout
        for w in hidden:
            scalars = self.activation(scalars @ w)
        return (scalars @ last).squeeze(1)
