"""Many-body product basis: a symmetric contraction of the atomic basis A to correlation ν.

For each atom n (element z), channel c and output degree L:

    B[n,c,LM] = Σ_{ν=1..ν_max} Σ_k W_ν,L[z,k,c] Σ_{a1..aν} U_ν,L[M,a1..aν,k] A[n,c,a1]⋯A[n,c,aν]

U (fixed, :func:`symmetric_coupling_basis`) spans the equivariant symmetric ν-linear maps, so
one layer carries up to (ν+1)-body information. Evaluation contracts U with the weights first
(T = U·W, per element), then with A through the unique pair products P[n, c, (a ≤ b)] = A_a A_b:

    ν=1: Σ_a A_a T1[M, a]                 ν=2: Σ_(ab) P_(ab) T2[M, (ab)]
    ν=3: Σ_a A_a Σ_(bd) P_(bd) T3[M, a, (bd)]    ν=4: Σ_(ab) P_(ab) Σ_(de) P_(de) T4[M, (ab), (de)]

which never forms D^ν-sized per-atom tensors. T is cached while the weights do not require
gradients (inference), so MD steps pay only for the contraction with A.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor, nn

from equipot.kernels import cpu_kernels
from equipot.kernels import is_batched as _is_batched
from equipot.nn.constants import Constants
from equipot.nn.coupling import symmetric_coupling_basis
from equipot.nn.species import Species


def _fold_pairs(tensor: np.ndarray, axes: tuple[int, int], pairs: np.ndarray) -> np.ndarray:
    """Replace two symmetric-contracted axes (a, b) by one axis over unique pairs a ≤ b."""
    t = np.moveaxis(tensor, axes, (0, 1))
    a, b = pairs[:, 0], pairs[:, 1]
    folded = t[a, b] + np.where((a != b)[(...,) + (None,) * (t.ndim - 2)], t[b, a], 0.0)
    return np.moveaxis(folded, 0, min(axes))


class SymmetricContraction(nn.Module):
    """A (N, (lmax_in+1)², C) → B (N, (lmax_out+1)², C), element-dependent weights."""

    def __init__(
        self,
        num_elements: int,
        channels: int,
        lmax_in: int,
        lmax_out: int,
        correlation: int,
        parity: bool,
    ):
        super().__init__()
        if not 1 <= correlation <= 4:
            raise ValueError(f"correlation order must be 1..4, got {correlation}")
        self.correlation = correlation
        self.lmax_out = lmax_out
        dim = (lmax_in + 1) ** 2
        self.dim_in = dim
        pairs = np.array(list(itertools.combinations_with_replacement(range(dim), 2)))
        # pair products A_a·A_b (a ≤ b) as (A @ S_a) * (A @ S_b) with 0/1 selection matrices:
        # two small matrix products are much faster than gathers (and their backward) on CPU.
        selection = np.zeros((2, dim, len(pairs)))
        selection[0, pairs[:, 0], np.arange(len(pairs))] = 1.0
        selection[1, pairs[:, 1], np.arange(len(pairs))] = 1.0
        self.constants = Constants(pair_selection=selection)
        self.dim_out = (lmax_out + 1) ** 2

        self.weights = nn.ParameterList()
        for nu in range(1, correlation + 1):
            blocks = [symmetric_coupling_basis(lmax_in, nu, L, parity) for L in range(lmax_out + 1)]
            total_k = sum(b.shape[-1] for b in blocks)
            # Folded basis G[rows, M_all, cols, k]; L blocks occupy disjoint (M, k) ranges.
            folded = None
            k0 = 0
            for L, u in enumerate(blocks):
                f = self._fold(u, nu, pairs)  # (2L+1, rows, cols, K_L)
                if folded is None:
                    folded = np.zeros((self.dim_out, *f.shape[1:3], total_k))
                folded[L * L : (L + 1) ** 2, :, :, k0 : k0 + f.shape[-1]] = f
                k0 += f.shape[-1]
            # Stored as (rows, M·cols, K) so T = G @ W is one matmul.
            g = np.moveaxis(folded, 0, 1).reshape(folded.shape[1], -1, total_k)
            self.constants.add(f"basis_{nu}", g)
            self._add_sparse_terms(nu, g, pairs)
            w = torch.randn(num_elements, total_k, channels, dtype=torch.float64)
            self.weights.append(nn.Parameter(w / max(total_k, 1) ** 0.5))
        self._cache: tuple | None = None
        self._sparse_cache: tuple | None = None

    def _add_sparse_terms(self, nu: int, g: np.ndarray, pairs: np.ndarray) -> None:
        """The kernel's form: B[M] += T[e]·Π A[f_e] over the non-zero terms e of the basis."""
        x, k = g.shape[1:]
        cols = x // self.dim_out
        flat = g.reshape(-1, k)
        nonzero = np.flatnonzero(np.abs(flat).max(axis=1) > 1e-12)
        row, rest = np.divmod(nonzero, x)
        out, col = np.divmod(rest, cols)
        if nu == 1:
            factors = col[:, None]
        elif nu == 2:
            factors = pairs[row]
        elif nu == 3:
            factors = np.concatenate([col[:, None], pairs[row]], axis=1)
        else:
            factors = np.concatenate([pairs[row], pairs[col]], axis=1)
        self.constants.add(f"factors_{nu}", factors)
        self.constants.add(f"outputs_{nu}", out)
        self.constants.add(f"terms_{nu}", flat[nonzero])

    def _term_values(self) -> list[Tensor]:
        """T_ν[z, e, c] = Σ_k terms_ν[e, k] W_ν[z, k, c] (cached while weights are frozen)."""
        key = tuple((w._version, w.data_ptr(), w.dtype) for w in self.weights)
        if self._sparse_cache is not None and self._sparse_cache[0] == key:
            return self._sparse_cache[1]
        values = [
            torch.einsum("ek,zkc->zec", self.constants.get(f"terms_{nu}", w), w).contiguous()
            for nu, w in enumerate(self.weights, start=1)
        ]
        if not any(w.requires_grad for w in self.weights):
            self._sparse_cache = (key, values)
        return values

    def kernel_terms(self, like: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Factor indices, output indices and per-element values of every non-zero term."""
        values = self._term_values()
        key = (like.dtype, like.device, tuple(id(v) for v in values))
        cached = self.__dict__.get("_kernel_terms")
        if cached is not None and cached[0] == key:
            return cached[1]
        orders = range(1, self.correlation + 1)
        factors = [self.constants.get(f"factors_{nu}", like) for nu in orders]
        outputs = [self.constants.get(f"outputs_{nu}", like) for nu in orders]
        terms = (factors, outputs, [v.to(like.dtype) for v in values])
        self.__dict__["_kernel_terms"] = (key, terms)
        return terms

    @staticmethod
    def _fold(u: np.ndarray, nu: int, pairs: np.ndarray) -> np.ndarray:
        """U[M, a1..aν, k] → (M, rows, cols, k) in the layout the contraction uses."""
        if nu == 1:
            return u[:, None, :, :]  # rows: 1, cols: a
        if nu == 2:
            return _fold_pairs(u, (1, 2), pairs)[:, :, None, :]  # rows: (ab), cols: 1
        if nu == 3:
            f = _fold_pairs(u, (2, 3), pairs)  # (M, a, (bd), k)
            return np.swapaxes(f, 1, 2)  # rows: (bd), cols: a
        f = _fold_pairs(u, (1, 2), pairs)  # (M, (ab), d, e, k)
        return _fold_pairs(f, (2, 3), pairs)  # rows: (ab), cols: (de)

    @torch.compiler.disable
    def _coupling_tensors(self) -> tuple[Tensor, Tensor | None]:
        """Weights contracted into the basis, for all elements at once.

        Returns T1 (C, E, M, D) and T (C, P, E, X) with X = [ν=2: M | ν=3: M·D | ν=4: M·P]
        (None when correlation is 1). Cached while the weights do not require gradients.
        """
        frozen = not any(w.requires_grad for w in self.weights)
        key = tuple((w._version, w.data_ptr(), w.dtype) for w in self.weights)
        if frozen and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        c = self.weights[0].shape[2]
        m, d = self.dim_out, self.dim_in
        g1 = self.constants.get("basis_1", self.weights[0])  # (1, M·D, K)
        t1 = torch.einsum("xk,ekc->cex", g1[0], self.weights[0]).reshape(c, -1, m, d)
        higher = [
            torch.einsum("rxk,ekc->crex", self.constants.get(f"basis_{nu}", w), w)
            for nu, w in enumerate(self.weights[1:], start=2)
        ]
        t = torch.cat(higher, dim=3) if higher else None
        if frozen:
            self._cache = (key, (t1, t))
        return t1, t

    use_kernel: bool = True  # see EnergyModel.set_execution

    # Multi-element batches: contract against every element's tensor and select per atom
    # while that is cheap, else group atoms by element.
    all_elements_below = 8192

    def forward(self, A: Tensor, species: Species) -> Tensor:
        frozen = not any(w.requires_grad for w in self.weights)
        if self.use_kernel and frozen and A.device.type == "cpu" and cpu_kernels() is not None:
            return _KernelContraction.apply(A, species, self)
        return self.reference(A, species)

    def reference(self, A: Tensor, species: Species) -> Tensor:
        """Differentiable PyTorch implementation (dense per-element coupling tensors)."""
        n, _, channels = A.shape
        t1, t = self._coupling_tensors()
        if species.single is not None:
            e = species.single
            return self._contract(A, t1[:, e], None if t is None else t[:, :, e])
        if n * t1.shape[1] <= self.all_elements_below:
            return self._contract(A, t1, t, species.index)
        out = A.new_zeros(n, self.dim_out, channels)
        for e in species.present:
            rows = species.rows(e)
            part = self._contract(A[rows], t1[:, e], None if t is None else t[:, :, e])
            out = out.index_copy(0, rows, part)
        return out

    def _contract(
        self, A: Tensor, t1: Tensor, t: Tensor | None, species: Tensor | None = None
    ) -> Tensor:
        """A (n, D, C) → (n, M, C). Without ``species``: t1 (C, M, D), t (C, P, X) of one
        element; with it: t1 (C, E, M, D), t (C, P, E, X), selected per atom.

        Works channel-major, (C, n, ·), so every product is a plain (batched) matmul.
        """
        n, dim, channels = A.shape
        m = self.dim_out
        a = A.permute(2, 0, 1).contiguous()  # (C, n, D)
        t1 = t1.unsqueeze(1) if species is None else t1[:, species]  # (C, 1|n, M, D)
        if t is None:
            return torch.matmul(t1, a.unsqueeze(-1)).squeeze(-1).permute(1, 2, 0)
        selection = self.constants.get("pair_selection", a)
        flat = a.view(channels * n, dim)
        pairs = ((flat @ selection[0]) * (flat @ selection[1])).view(channels, n, -1)  # (C,n,P)
        if species is None:
            q = torch.bmm(pairs, t)  # (C, n, X)
        else:
            q = torch.bmm(pairs, t.flatten(2)).view(channels, n, t.shape[2], -1)
            q = q[:, torch.arange(n, device=A.device), species]  # (C, n, X)
        sizes = [m, m * dim, m * pairs.shape[2]][: self.correlation - 1]
        q_parts = torch.split(q, sizes, dim=2)
        out = q_parts[0]  # ν = 2
        # ν = 1 and ν = 3 are both linear in one more factor of A: Σ_a A_a (T1 + Q3)[m, a]
        linear = t1 if self.correlation < 3 else q_parts[1].reshape(channels, n, m, dim) + t1
        out = out + torch.matmul(linear, a.unsqueeze(-1)).squeeze(-1)
        if self.correlation >= 4:
            q4 = q_parts[2].reshape(channels, n, m, -1)
            out = out + torch.matmul(q4, pairs.unsqueeze(-1)).squeeze(-1)
        return out.permute(1, 2, 0)


class _KernelContraction(torch.autograd.Function):
    """Fused kernel forward/backward; double backward through the reference implementation."""

    @staticmethod
    def forward(ctx, A, species: Species, module: SymmetricContraction):
        ctx.module, ctx.species = module, species
        ctx.save_for_backward(A)
        return cpu_kernels().sc_forward(A, species.index, module.dim_out, *module.kernel_terms(A))

    @staticmethod
    def backward(ctx, grad):
        (A,) = ctx.saved_tensors
        module: SymmetricContraction = ctx.module
        if torch.is_grad_enabled() or _is_batched(grad):  # double backward / vmap: reference
            with torch.enable_grad():
                A_ = A.view_as(A)  # a fresh alias: the partial derivative only
                out = module.reference(A_, ctx.species)
                (gA,) = torch.autograd.grad(out, A_, grad, create_graph=True)
            return gA, None, None
        terms = module.kernel_terms(A)
        return cpu_kernels().sc_backward(grad, A, ctx.species.index, *terms), None, None
