"""Clebsch–Gordan coupling: allowed paths and the symmetric many-body coupling basis.

Features carry one irrep per degree ``l``. In O(3) mode (``parity=True``) every feature of
degree l has the parity (-1)^l of Y_l, and a coupling l1 ⊗ l2 → L is kept only if it
preserves that (l1 + l2 + L even). In SO(3) mode (``parity=False``) every triangle-allowed
coupling is kept; the odd ones (e.g. the cross product 1 ⊗ 1 → 1) make the model sensitive to
chirality.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
from e3nn import o3


@functools.cache
def clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real CG tensor C[m1, m2, m3] in e3nn's basis, float64, Frobenius norm 1."""
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()


def coupling_allowed(l1: int, l2: int, l3: int, parity: bool) -> bool:
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        return False
    return (l1 + l2 + l3) % 2 == 0 if parity else True


def tensor_product_paths(
    lmax_in: int, lmax_sh: int, lmax_out: int, parity: bool
) -> list[tuple[int, int, int]]:
    """All (l_feature, l_sh, l_out) couplings, sorted by l_sh then l_feature then l_out."""
    return [
        (l1, l2, l3)
        for l2 in range(lmax_sh + 1)
        for l1 in range(lmax_in + 1)
        for l3 in range(lmax_out + 1)
        if coupling_allowed(l1, l2, l3, parity)
    ]


def _coupled_block(ls: tuple[int, ...], intermediates: tuple[int, ...]) -> np.ndarray:
    """Couple irreps ls[0] ⊗ ls[1] → intermediates[0] ⊗ ls[2] → ... ; returns T[M, m1, ..., mν]."""
    block = np.eye(2 * ls[0] + 1)  # [L, m1] with L = ls[0]
    current = ls[0]
    for l_next, coupled in zip(ls[1:], intermediates, strict=True):
        cg = clebsch_gordan(current, l_next, coupled)  # [M, m, M']
        block = np.einsum("a...,abc->c...b", block, cg)
        current = coupled
    return block


def _symmetrise_equal_degrees(block: np.ndarray, ls: tuple[int, ...]) -> np.ndarray:
    """Average over permutations of input slots that carry the same degree."""
    groups: dict[int, list[int]] = {}
    for slot, l in enumerate(ls):
        groups.setdefault(l, []).append(slot)
    perms = [list(itertools.permutations(slots)) for slots in groups.values()]
    total = np.zeros_like(block)
    count = 0
    for choice in itertools.product(*perms):
        order = list(range(len(ls)))
        for slots, permuted in zip(groups.values(), choice, strict=True):
            for source, target in zip(slots, permuted, strict=True):
                order[source] = target
        total += np.transpose(block, [0] + [1 + o for o in order])
        count += 1
    return total / count


@functools.cache
def symmetric_coupling_basis(lmax_in: int, nu: int, l_out: int, parity: bool) -> np.ndarray:
    """Basis U[M, a1, ..., aν, k] of equivariant maps A ↦ Σ U A_a1⋯A_aν of degree l_out.

    ``a`` runs over all (lmax_in+1)² components of one channel of A. The maps are the distinct
    ways to couple ν copies of A to degree l_out; since A⊗⋯⊗A is symmetric, couplings are built
    only on sorted degree tuples l1 ≤ ⋯ ≤ lν, symmetrised over equal degrees, and reduced to an
    orthonormal, linearly independent set per tuple (different tuples never overlap).
    """
    dim = (lmax_in + 1) ** 2
    basis = []
    for ls in itertools.combinations_with_replacement(range(lmax_in + 1), nu):
        if parity and (sum(ls) + l_out) % 2:
            continue
        candidates = []
        for intermediates in _intermediate_chains(ls, l_out):
            block = _coupled_block(ls, intermediates)
            block = _symmetrise_equal_degrees(block, ls)
            if np.abs(block).max() > 1e-10:
                candidates.append(block.reshape(-1))
        if not candidates:
            continue
        u, s, _ = np.linalg.svd(np.stack(candidates, axis=1), full_matrices=False)
        independent = u[:, s > 1e-8 * s[0]]
        shape = (2 * l_out + 1, *[2 * l + 1 for l in ls])
        for k in range(independent.shape[1]):
            full = np.zeros((2 * l_out + 1,) + (dim,) * nu)
            index = (slice(None), *[slice(l * l, (l + 1) * (l + 1)) for l in ls])
            full[index] = independent[:, k].reshape(shape)
            basis.append(full)
    if not basis:
        return np.zeros((2 * l_out + 1,) + (dim,) * nu + (0,))
    return np.stack(basis, axis=-1)


def _intermediate_chains(ls: tuple[int, ...], l_out: int):
    """All sequences of intermediate degrees coupling ls left to right, ending at l_out."""

    def extend(current: int, rest: tuple[int, ...]):
        if not rest:
            yield ()
            return
        for coupled in range(abs(current - rest[0]), current + rest[0] + 1):
            for tail in extend(coupled, rest[1:]):
                yield (coupled, *tail)

    for chain in extend(ls[0], ls[1:]):
        if (chain[-1] if chain else ls[0]) == l_out:
            yield chain
