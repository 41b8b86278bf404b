"""The hot path: neighbour features ⊗ spherical harmonics, weighted by radial functions.

    S_i[p,M,c] = Σ_j R_ij[p,c] · √(2L+1) Σ_{m1 m2} C^{l1 l2 L}_{m1 m2 M} h_j[l1 m1, c] Y_ij[l2 m2]

for every coupling path p = (l1, l2 → L). :class:`EdgeTensorProduct` is the single interface
for this operation, with two interchangeable implementations that give the same numbers:

* a fused CPU kernel (:mod:`equipot.kernels`) that adds each neighbour's contribution straight
  into S — no per-edge intermediates — used for energies and first derivatives;
* the PyTorch reference below, used for double derivatives (training on forces, Hessians), on
  other devices, and where the kernel cannot be built.

Neighbours are in a padded layout: atom i's neighbours occupy slots (i, 0..count_i-1); empty
slots have R = 0 (the radial functions vanish beyond the cutoff). The reference reduces over
slots with batched matrix products,

    G[i, k, q, c] = R_ik[p(q), c] · h_{j(i,k)}[m1(q), c]          q = (path, m1)
    P[i, m2, q, c] = Σ_k Y_ik[m2] · G[i, k, q, c]                  (bmm over k)
    S[i, col, c]  = Σ_{q, m2} CG[q, m2, col] · P[i, m2, q, c]      (node-level)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from equipot.kernels import cpu_kernels
from equipot.kernels import is_batched as _is_batched
from equipot.nn.constants import Constants
from equipot.nn.coupling import clebsch_gordan, tensor_product_paths

_TABLES = ("path_info", "path_cols", "cg_ptr", "cg_index", "cg_value")


class EdgeTensorProduct(nn.Module):
    """Channel-wise ("uvu") CG tensor product summed over neighbours.

    Shapes: h (N, (lmax_in+1)², C); Y (N, K, (lmax_sh+1)²); R (N, K, P, C); neighbors and
    counts from :class:`~equipot.nn.neighborhood.PaddedNeighbors`. Returns S (N, columns, C)
    with columns ordered by (L, M, path-within-L); ``paths_per_l[L]`` paths end in degree L.
    """

    def __init__(self, lmax_in: int, lmax_sh: int, lmax_out: int, parity: bool):
        super().__init__()
        self.paths = tensor_product_paths(lmax_in, lmax_sh, lmax_out, parity)
        self.lmax_in, self.lmax_sh = lmax_in, lmax_sh
        self.lmax_out = max(p[2] for p in self.paths)
        self.paths_per_l = [
            sum(1 for p in self.paths if p[2] == L) for L in range(self.lmax_out + 1)
        ]
        column = {}  # (path, M) → output column
        col = 0
        for L in range(self.lmax_out + 1):
            members = [k for k, p in enumerate(self.paths) if p[2] == L]
            for M in range(2 * L + 1):
                for k in members:
                    column[k, M] = col
                    col += 1
        self.num_columns = col
        self.constants = Constants()
        self._build_kernel_tables(column)
        self._build_reference_tables(column)

    use_kernel: bool = True  # see EnergyModel.set_execution

    @property
    def num_paths(self) -> int:
        return len(self.paths)

    def _build_kernel_tables(self, column: dict) -> None:
        info, cols, ptr, index, value = [], [], [0], [], []
        for k, (l1, l2, L) in enumerate(self.paths):
            info.append([l1 * l1, 2 * l1 + 1, l2 * l2, 2 * L + 1])
            cols.append([column[k, M] for M in range(2 * L + 1)] + [-1] * (6 - 2 * L))
            cg = clebsch_gordan(l1, l2, L) * math.sqrt(2 * L + 1)
            for m1, m2, M in zip(*np.nonzero(np.abs(cg) > 1e-14), strict=True):
                index.append([m1, m2, M])
                value.append(cg[m1, m2, M])
            ptr.append(len(value))
        self.constants.add("path_info", np.array(info))
        self.constants.add("path_cols", np.array(cols))
        self.constants.add("cg_ptr", np.array(ptr))
        self.constants.add("cg_index", np.array(index))
        self.constants.add("cg_value", np.array(value))

    def _build_reference_tables(self, column: dict) -> None:
        """Rows q = (path, m1) of R ⊙ h_j and the CG matrix (q, m2) → columns."""
        dim_sh = (self.lmax_sh + 1) ** 2
        path_of_q, component_of_q, rows = [], [], []
        for k, (l1, l2, L) in enumerate(self.paths):
            path_of_q += [k] * (2 * l1 + 1)
            component_of_q += list(range(l1 * l1, (l1 + 1) ** 2))
            block = np.zeros((2 * l1 + 1, dim_sh, self.num_columns))
            cg = clebsch_gordan(l1, l2, L) * math.sqrt(2 * L + 1)
            for M in range(2 * L + 1):
                block[:, l2 * l2 : (l2 + 1) ** 2, column[k, M]] = cg[:, :, M]
            rows.append(block)
        self.constants.add("path_of_q", np.array(path_of_q))
        self.constants.add("component_of_q", np.array(component_of_q))
        self.constants.add("cg", np.concatenate(rows))  # (Q, D_sh, columns)

    def forward(self, h: Tensor, Y: Tensor, R: Tensor, neighbors: Tensor, counts: Tensor) -> Tensor:
        if self.use_kernel and h.device.type == "cpu" and cpu_kernels() is not None:
            return _KernelTensorProduct.apply(h, Y, R, neighbors, counts, self)
        return self.reference(h, Y, R, neighbors, counts)

    def reference(
        self, h: Tensor, Y: Tensor, R: Tensor, neighbors: Tensor, counts: Tensor
    ) -> Tensor:
        """Differentiable PyTorch implementation (any order of derivatives, any device).

        Only occupied slots (k < counts[i]) contribute, exactly as in the kernel.
        """
        n, k = neighbors.shape
        occupied = torch.arange(k, device=counts.device) < counts.unsqueeze(1)
        R = R * occupied.view(n, k, 1, 1).to(R.dtype)
        h_j = h.index_select(0, neighbors.reshape(-1)).view(n, k, *h.shape[1:])  # (N,K,D,C)
        g = R.index_select(2, self.constants.get("path_of_q", neighbors)) * h_j.index_select(
            2, self.constants.get("component_of_q", neighbors)
        )  # (N, K, Q, C)
        p = torch.bmm(Y.transpose(1, 2), g.view(n, k, -1))  # (N, D_sh, Q·C)
        p = p.view(n, Y.shape[2], -1, h.shape[2])
        return torch.einsum("nmqc,qmx->nxc", p, self.constants.get("cg", h))

    def kernel_tables(self, indices: Tensor, values: Tensor) -> list[Tensor]:
        """Path/CG tables for the kernel (integers like ``indices``, CG like ``values``)."""
        return [self.constants.get(name, indices) for name in _TABLES[:-1]] + [
            self.constants.get("cg_value", values)
        ]


class _KernelTensorProduct(torch.autograd.Function):
    """Fused kernel forward/backward; double backward through the reference implementation."""

    @staticmethod
    def forward(ctx, h, Y, R, neighbors, counts, module: EdgeTensorProduct):
        ctx.module = module
        ctx.save_for_backward(h, Y, R, neighbors, counts)
        tables = module.kernel_tables(neighbors, R)
        return cpu_kernels().tp_forward(h, Y, R, neighbors, counts, module.num_columns, *tables)

    @staticmethod
    def backward(ctx, grad):
        h, Y, R, neighbors, counts = ctx.saved_tensors
        module: EdgeTensorProduct = ctx.module
        if torch.is_grad_enabled() or _is_batched(grad):  # double backward / vmap: reference
            with torch.enable_grad():
                # Fresh aliases: partial derivatives only. Differentiating with respect to h,
                # Y, R themselves would add paths between them (h depends on Y through the
                # earlier layers) that the outer backward pass accounts for separately.
                h_, Y_, R_ = (t.view_as(t) for t in (h, Y, R))
                inputs = [t for t in (h_, Y_, R_) if t.requires_grad]
                out = module.reference(h_, Y_, R_, neighbors, counts)
                grads = iter(torch.autograd.grad(out, inputs, grad, create_graph=True))
                gh, gY, gR = (next(grads) if t.requires_grad else None for t in (h_, Y_, R_))
                return gh, gY, gR, None, None, None
        need_h = ctx.needs_input_grad[0]
        tables = module.kernel_tables(neighbors, R)
        gh, gY, gR = cpu_kernels().tp_backward(grad, h, Y, R, neighbors, counts, need_h, *tables)
        return (gh if need_h else None), gY, gR, None, None, None
