"""The interaction's node update: many-body product basis, linear map, skip path, readout.

    B_i  = SymmetricContraction_{z_i}(A_i)                         (N, (L_out+1)², C)
    h_i' = W_out·B_i + W_sc[z_i]·h_i      (W_sc only in layers > 0, degrees ≤ both l_max)
    y_i  = w·h_i'⁰  or  w₂·SiLU(w₁·h_i'⁰)  (linear readout; an MLP in the last layer)

As for the edge block, :meth:`NodeUpdate.reference` is the differentiable composition and
:class:`_FusedNodeUpdate` the inference path (frozen weights): one autograd node whose
first-order backward is written out, handing double derivatives to the reference.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from equipot.kernels import cpu_kernels, is_batched
from equipot.nn.constants import is_frozen
from equipot.nn.linear import (
    SILU_SCALE,
    ElementIrrepsLinear,
    IrrepsLinear,
    NormalizedSiLU,
    init_weight,
    l_slice,
)
from equipot.nn.product_basis import SymmetricContraction
from equipot.nn.species import Species


class NodeUpdate(nn.Module):
    def __init__(
        self,
        *,
        num_elements: int,
        channels: int,
        lmax_in: int,
        lmax_a: int,
        lmax_out: int,
        correlation: int,
        parity: bool,
        residual: bool,
        readout_hidden: int | None,
    ):
        super().__init__()
        self.product = SymmetricContraction(
            num_elements, channels, lmax_a, lmax_out, correlation, parity
        )
        self.linear_out = IrrepsLinear(lmax_out, channels, channels)
        self.self_connection = (
            ElementIrrepsLinear(num_elements, min(lmax_in, lmax_out), channels, channels)
            if residual
            else None
        )
        sizes = [channels, 1] if readout_hidden is None else [channels, readout_hidden, 1]
        self.readout = nn.ParameterList(
            [nn.Parameter(init_weight(a, b)) for a, b in itertools.pairwise(sizes)]
        )
        self.activation = NormalizedSiLU()

    def forward(
        self, A: Tensor, h: Tensor, species_index: Tensor, present: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        if (
            is_frozen(self)
            and self.product.use_kernel
            and A.device.type == "cpu"
            and cpu_kernels() is not None
        ):
            return _FusedNodeUpdate.apply(A, h, species_index, present, self)
        return self.reference(A, h, species_index, present)

    def reference(
        self, A: Tensor, h: Tensor, species_index: Tensor, present: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        species = Species(species_index, present)
        h_new = self.linear_out(self.product(A, species))
        if self.self_connection is not None:
            skip = self.self_connection(h, species)
            k = skip.shape[1]
            h_new = (
                torch.cat([h_new[:, :k] + skip, h_new[:, k:]], 1)
                if k < h_new.shape[1]
                else h_new + skip
            )
        return h_new, (self.readout_input(h_new) @ self.readout[-1]).squeeze(1)

    def readout_input(self, h_new: Tensor) -> Tensor:
        """What the last readout matrix multiplies: the scalars of h', or the MLP's hidden
        activations (N, C or H)."""
        scalars = h_new[:, 0]
        for w in self.readout[:-1]:
            scalars = self.activation(scalars @ w)
        return scalars


def _blocks(x: Tensor, lmax: int) -> list[Tensor]:
    return [x[:, l_slice(l)] for l in range(lmax + 1)]


def _per_element(x: Tensor, weights: Tensor, species: Species, transpose: bool) -> Tensor:
    """x_n (m, C) @ W[z_n] (or W[z_n]ᵀ) for every atom n; weights (E, C, C').

    A mixture: one product against every element's weights, then a per-atom selection (a
    handful of operations whatever the number of elements; E× the FLOPs of a small product).
    """
    w = weights.transpose(1, 2) if transpose else weights  # (E, C_in, C_out)
    if species.single is not None:
        return x @ w[species.single]
    n, m = x.shape[:2]
    num_elements, c_in, c_out = w.shape
    every = (x @ w.permute(1, 0, 2).reshape(c_in, num_elements * c_out)).view(
        n, m, num_elements, c_out
    )
    index = species.index.view(n, 1, 1, 1).expand(n, m, 1, c_out)
    return every.gather(2, index).squeeze(2)


class _FusedNodeUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A, h, species_index, present, node: NodeUpdate):
        species = Species(species_index, present)
        product = node.product
        B = cpu_kernels().sc_forward(A, species_index, product.dim_out, *product.kernel_terms(A))
        lmax_out = node.linear_out.lmax_out
        w_out = node.linear_out.weights
        h_new = torch.cat([b @ w for b, w in zip(_blocks(B, lmax_out), w_out, strict=True)], 1)
        if node.self_connection is not None:
            sc = node.self_connection
            for l, x_l in enumerate(_blocks(h, sc.lmax)):
                h_new[:, l_slice(l)] += _per_element(x_l, sc.weights[l], species, False)
        pre = []
        scalars = h_new[:, 0]
        *hidden, last = node.readout
        for w in hidden:
            z = scalars @ w
            pre.append(z)
            scalars = torch.nn.functional.silu(z) * SILU_SCALE
        y = (scalars @ last).squeeze(1)
        ctx.node, ctx.present = node, present
        ctx.save_for_backward(A, h, species_index, *pre)
        return h_new, y

    @staticmethod
    def backward(ctx, g_h_new, g_y):
        A, h, species_index, *pre = ctx.saved_tensors
        node: NodeUpdate = ctx.node
        probe = g_h_new if g_h_new is not None else g_y
        if torch.is_grad_enabled() or is_batched(probe):  # double backward / vmap: reference
            with torch.enable_grad():
                A_, h_ = A.view_as(A), h.view_as(h)
                inputs = [t for t in (A_, h_) if t.requires_grad]
                outs = node.reference(A_, h_, species_index, ctx.present)
                pairs = [(o, g) for o, g in zip(outs, (g_h_new, g_y), strict=True) if g is not None]
                grads = iter(
                    torch.autograd.grad(
                        [o for o, _ in pairs],
                        inputs,
                        [g for _, g in pairs],
                        create_graph=True,
                        allow_unused=True,
                    )
                )
                gA, gh = (next(grads) if t.requires_grad else None for t in (A_, h_))
            return gA, gh, None, None, None
        species = Species(species_index, ctx.present)
        n, m_out = A.shape[0], (node.linear_out.lmax_out + 1) ** 2
        channels = A.shape[2]
        G = torch.zeros(n, m_out, channels, dtype=A.dtype) if g_h_new is None else g_h_new.clone()
        if g_y is not None:
            *hidden, last = node.readout
            g = g_y.unsqueeze(1) * last.T
            for w, z in zip(reversed(hidden), reversed(pre), strict=True):
                s = torch.sigmoid(z)
                g = (g * SILU_SCALE * s * (1.0 + z * (1.0 - s))) @ w.T
            G[:, 0] += g
        w_out = node.linear_out.weights
        gB = torch.cat(
            [g_l @ w.T for g_l, w in zip(_blocks(G, len(w_out) - 1), w_out, strict=True)], 1
        )
        product = node.product
        gA = cpu_kernels().sc_backward(gB, A, species_index, *product.kernel_terms(A))
        gh = None
        if ctx.needs_input_grad[1] and node.self_connection is not None:
            gh = torch.zeros_like(h)
            sc = node.self_connection
            for l, g_l in enumerate(_blocks(G, sc.lmax)):
                gh[:, l_slice(l)] = _per_element(g_l, sc.weights[l], species, True)
        return gA, gh, None, None, None
