"""The hot path: neighbour features ⊗ spherical harmonics, weighted by radial functions.

    S_i[p,c,M] = Σ_j R_ij[p,c] · √(2L+1) Σ_{m1 m2} C^{l1 l2 L}_{m1 m2 M} h_j[l1 m1, c] Y_ij[l2 m2]

for every coupling path p = (l1, l2 → L). This module is the single interface for that
operation; a faster kernel only has to implement :meth:`EdgeTensorProduct.forward` with the same
shapes and can be swapped in and benchmarked.

Neighbours are in a padded layout: atom i's neighbours occupy slots (i, 0..K-1), empty slots
have R = 0 (the radial functions vanish beyond the cutoff), so sums over neighbours are plain
reductions over the slot axis — batched matrix products here,

    G[i, k, q, c] = R_ik[p(q), c] · h_{j(i,k)}[m1(q), c]          q = (path, m1)
    P[i, q, c, m2] = Σ_k G[i, k, q, c] · Y_ik[m2]                  (bmm over k)
    S[i, c, col]  = Σ_{q, m2} P[i, q, c, m2] · CG[(q, m2), col]    (node-level)

which never materialise the (edges × channels × components²) outer products a scatter-based
implementation needs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from equipot.nn.constants import Constants
from equipot.nn.coupling import clebsch_gordan, tensor_product_paths


class EdgeTensorProduct(nn.Module):
    """Channel-wise ("uvu") CG tensor product summed over neighbours.

    Shapes: h (N, (lmax_in+1)², C); Y (N, K, (lmax_sh+1)²); R (N, K, P, C); neighbors (N, K).
    Returns S (N, C, columns), columns ordered by (L, path-within-L, M); ``paths_per_l[L]``
    says how many paths end in degree L.
    """

    # Below this many neighbour slots, one product against all harmonics (a few ops) beats one
    # product per harmonic degree (fewer FLOPs): small molecules are dominated by op overhead.
    fused_below_slots = 2048

    def __init__(self, lmax_in: int, lmax_sh: int, lmax_out: int, parity: bool):
        super().__init__()
        self.paths = tensor_product_paths(lmax_in, lmax_sh, lmax_out, parity)
        self.lmax_in = lmax_in
        self.lmax_sh = lmax_sh
        self.lmax_out = max(p[2] for p in self.paths)
        self.paths_per_l = [sum(1 for p in self.paths if p[2] == L) for L in range(self.lmax_out + 1)]
        column_start, col = {}, 0
        for L in range(self.lmax_out + 1):
            for index, path in enumerate(self.paths):
                if path[2] == L:
                    column_start[index] = col
                    col += 2 * L + 1
        self.num_columns = col
        self.constants = Constants()
        dim_sh = (lmax_sh + 1) ** 2
        # Paths are sorted by (l2, l1): each (l2, l1) block is a contiguous run of paths.
        self.blocks: list[tuple[int, int, int, int]] = []  # (l2, l1, first path, n paths)
        self.groups: list[int] = sorted({p[1] for p in self.paths})
        fused_rows = []
        for l2 in self.groups:
            group_rows = []
            for l1 in range(lmax_in + 1):
                members = [k for k, p in enumerate(self.paths) if p[1] == l2 and p[0] == l1]
                if not members:
                    continue
                self.blocks.append((l2, l1, members[0], len(members)))
                for k in members:  # rows q = (path, m1), path-major
                    L = self.paths[k][2]
                    rows = np.zeros((2 * l1 + 1, dim_sh, self.num_columns))
                    cg = clebsch_gordan(l1, l2, L) * math.sqrt(2 * L + 1)
                    rows[:, l2 * l2 : (l2 + 1) ** 2, column_start[k] : column_start[k] + 2 * L + 1] = cg
                    group_rows.append(rows)
            group = np.concatenate(group_rows)
            fused_rows.append(group)
            self.constants.add(f"cg_{l2}", group[:, l2 * l2 : (l2 + 1) ** 2])
        self.constants.add("cg", np.concatenate(fused_rows))
        path_of_q = [
            k
            for _, l1, first, count in self.blocks
            for k in range(first, first + count)
            for _ in range(2 * l1 + 1)
        ]
        component_of_q = [
            m
            for _, l1, first, count in self.blocks
            for _ in range(count)
            for m in range(l1 * l1, (l1 + 1) ** 2)
        ]
        self.constants.add("path_of_q", np.array(path_of_q))
        self.constants.add("component_of_q", np.array(component_of_q))

    @property
    def num_paths(self) -> int:
        return len(self.paths)

    def forward(self, h: Tensor, Y: Tensor, R: Tensor, neighbors: Tensor) -> Tensor:
        n, k = neighbors.shape
        h_j = h.index_select(0, neighbors.reshape(-1)).view(n, k, *h.shape[1:])  # (N,K,D,C)
        if n * k < self.fused_below_slots:
            g = R.index_select(2, self.constants.get("path_of_q", neighbors)) * h_j.index_select(
                2, self.constants.get("component_of_q", neighbors)
            )  # (N, K, Q, C)
            p = torch.bmm(Y.transpose(1, 2), g.view(n, k, -1))  # (N, D_sh, Q·C)
            return torch.einsum("nmqc,qmx->ncx", p.view(n, Y.shape[2], -1, h.shape[2]), self.constants.get("cg", h))
        r_paths = torch.split(R, 1, dim=2)
        h_blocks = torch.split(h_j, [2 * l + 1 for l in range(self.lmax_in + 1)], dim=2)
        y_blocks = torch.split(Y, [2 * l + 1 for l in range(self.lmax_sh + 1)], dim=2)
        out = None
        for l2 in self.groups:
            y_t = y_blocks[l2].transpose(1, 2)  # (N, 2l2+1, K)
            # one bmm per path: concatenating the per-edge products first costs a big copy
            products = [
                torch.bmm(y_t, (r_paths[p] * h_blocks[l1]).view(n, k, -1))  # (N, 2l2+1, m1·C)
                for b2, l1, first, count in self.blocks
                if b2 == l2
                for p in range(first, first + count)
            ]
            prod = torch.cat(products, dim=2) if len(products) > 1 else products[0]
            part = torch.einsum(
                "nmqc,qmx->ncx",
                prod.view(n, 2 * l2 + 1, -1, h.shape[2]),
                self.constants.get(f"cg_{l2}", h),
            )
            out = part if out is None else out + part
        return out
