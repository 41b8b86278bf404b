"""The interaction's edge block: radial MLP → tensor product → path mixing, summed over j.

    R_ij   = MLP(b(r_ij) · u(r_ij))                                   (N, K, P, C)
    S_i    = Σ_j TP(h_j, Y(r̂_ij), R_ij)                               (N, columns, C)
    A_i,LM = (1/n̄) Σ_{p→L} Σ_c S_i[(L, M, p), c] · W_L[(p, c), c']     (N, (l_max+1)², C)

Two executions of the same function:

* :meth:`EdgeBlock.reference` composes PyTorch modules — differentiable to any order; used for
  training (weights require gradients) and for double derivatives;
* for inference with frozen weights, :class:`_FusedEdgeBlock` runs the whole block as one
  autograd node with a hand-written first-order backward (the fused tensor-product kernel plus
  a few matrix products). It records no per-op autograd graph — on small molecules that graph's
  bookkeeping costs more than the arithmetic. Its backward hands double derivatives to the
  reference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equipot.kernels import cpu_kernels, is_batched
from equipot.nn.constants import is_frozen, parameter_list
from equipot.nn.linear import SILU_SCALE, init_weight
from equipot.nn.radial import RadialMLP
from equipot.nn.tensor_product import EdgeTensorProduct


class EdgeBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        lmax_in: int,
        lmax_sh: int,
        parity: bool,
        num_radial: int,
        radial_hidden: list[int],
    ):
        super().__init__()
        self.tensor_product = EdgeTensorProduct(lmax_in, lmax_sh, lmax_sh, parity)
        tp = self.tensor_product
        self.radial = RadialMLP(num_radial, radial_hidden, channels * tp.num_paths)
        self.path_mixing = nn.ParameterList(
            [nn.Parameter(init_weight(channels * count, channels)) for count in tp.paths_per_l]
        )
        self._frozen_cache: tuple | None = None

    @property
    def lmax_out(self) -> int:
        return self.tensor_product.lmax_out

    def forward(
        self,
        Y: Tensor,
        radial_basis: Tensor,
        neighbors: Tensor,
        counts: Tensor,
        h: Tensor,
        inv_avg: float,
    ) -> Tensor:
        if (
            is_frozen(self)
            and self.tensor_product.use_kernel
            and h.device.type == "cpu"
            and cpu_kernels() is not None
        ):
            return _FusedEdgeBlock.apply(Y, radial_basis, h, neighbors, counts, self, inv_avg)
        return self.reference(Y, radial_basis, neighbors, counts, h, inv_avg)

    def reference(
        self,
        Y: Tensor,
        radial_basis: Tensor,
        neighbors: Tensor,
        counts: Tensor,
        h: Tensor,
        inv_avg: float,
    ) -> Tensor:
        n, k = neighbors.shape
        channels = h.shape[2]
        R = self.radial(radial_basis).view(n, k, -1, channels)
        columns = self.tensor_product(h, Y, R, neighbors, counts)  # (N, cols, C)
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

    def frozen_weights(self, inv_avg: float) -> tuple[list[Tensor], list[Tensor]]:
        """MLP weights with the SiLU normalisation folded in, and mixing weights / n̄."""
        key = (inv_avg, tuple((p._version, p.data_ptr(), p.dtype) for p in parameter_list(self)))
        if self._frozen_cache is not None and self._frozen_cache[0] == key:
            return self._frozen_cache[1]
        first, *rest = self.radial.weights
        mlp = [first.detach()] + [(w * SILU_SCALE).detach() for w in rest]
        mixing = [(w * inv_avg).detach() for w in self.path_mixing]
        self._frozen_cache = (key, (mlp, mixing))
        return mlp, mixing


def _silu_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


class _FusedEdgeBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, Y, radial_basis, h, neighbors, counts, block: EdgeBlock, inv_avg):
        n, k = neighbors.shape
        channels = h.shape[2]
        mlp, mixing = block.frozen_weights(inv_avg)
        tp = block.tensor_product
        x = radial_basis.reshape(n * k, -1)
        pre = []  # pre-activations of the hidden layers, for the backward pass
        z = x @ mlp[0]
        for w in mlp[1:]:
            pre.append(z)
            z = torch.nn.functional.silu(z) @ w
        R = z.view(n, k, -1, channels)
        columns = cpu_kernels().tp_forward(
            h, Y, R, neighbors, counts, tp.num_columns, *tp.kernel_tables(neighbors, R)
        )
        out, start = [], 0
        for L, (count, w) in enumerate(zip(tp.paths_per_l, mixing, strict=True)):
            width = (2 * L + 1) * count
            piece = columns[:, start : start + width].reshape(n * (2 * L + 1), count * channels)
            out.append((piece @ w).view(n, 2 * L + 1, channels))
            start += width
        ctx.block, ctx.inv_avg = block, inv_avg
        ctx.save_for_backward(Y, radial_basis, h, neighbors, counts, R, *pre)
        return torch.cat(out, dim=1)

    @staticmethod
    def backward(ctx, grad):
        Y, radial_basis, h, neighbors, counts, R, *pre = ctx.saved_tensors
        block: EdgeBlock = ctx.block
        if torch.is_grad_enabled() or is_batched(grad):  # double backward / vmap: reference
            with torch.enable_grad():
                Y_, b_, h_ = (t.view_as(t) for t in (Y, radial_basis, h))
                inputs = [t for t in (Y_, b_, h_) if t.requires_grad]
                out = block.reference(Y_, b_, neighbors, counts, h_, ctx.inv_avg)
                grads = iter(torch.autograd.grad(out, inputs, grad, create_graph=True))
                gY, gb, gh = (next(grads) if t.requires_grad else None for t in (Y_, b_, h_))
            return gY, gb, gh, None, None, None, None
        n, k = neighbors.shape
        channels = h.shape[2]
        mlp, mixing = block.frozen_weights(ctx.inv_avg)
        tp = block.tensor_product
        pieces, start = [], 0
        for L, (count, w) in enumerate(zip(tp.paths_per_l, mixing, strict=True)):
            g_L = grad[:, start : start + 2 * L + 1].reshape(n * (2 * L + 1), channels)
            pieces.append((g_L @ w.T).view(n, (2 * L + 1) * count, channels))
            start += 2 * L + 1
        grad_columns = torch.cat(pieces, dim=1)
        need_h = ctx.needs_input_grad[2]
        gh, gY, gR = cpu_kernels().tp_backward(
            grad_columns, h, Y, R, neighbors, counts, need_h, *tp.kernel_tables(neighbors, R)
        )
        g = gR.view(n * k, -1)
        for w, z in zip(reversed(mlp[1:]), reversed(pre), strict=True):
            g = (g @ w.T) * _silu_grad(z)
        g_basis = (g @ mlp[0].T).view_as(radial_basis)
        return gY, g_basis, (gh if need_h else None), None, None, None, None
