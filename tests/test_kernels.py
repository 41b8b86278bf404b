"""Fused CPU kernels against the PyTorch reference: values, first and second derivatives."""

from __future__ import annotations

import pytest
import torch

from equipot.kernels import cpu_kernels
from equipot.nn.neighborhood import pad_neighbors
from equipot.nn.product_basis import SymmetricContraction
from equipot.nn.species import Species
from equipot.nn.tensor_product import EdgeTensorProduct

pytestmark = pytest.mark.skipif(cpu_kernels() is None, reason="kernels could not be built")
GEN = torch.Generator().manual_seed(0)


def _random_padded(n: int, k_max: int):
    """A random padded neighbour layout with ragged neighbour counts."""
    counts = torch.randint(1, k_max + 1, (n,), generator=GEN)
    centres = torch.repeat_interleave(torch.arange(n), counts)
    others = torch.randint(0, n, (len(centres),), generator=GEN)
    padded = pad_neighbors(torch.stack([centres, others]), n)
    return padded


@pytest.mark.parametrize("lmax_in,parity", [(0, True), (1, True), (2, False)])
def test_tensor_product_kernel_matches_reference(lmax_in, parity):
    tp = EdgeTensorProduct(lmax_in=lmax_in, lmax_sh=3, lmax_out=3, parity=parity)
    n, c = 7, 5
    padded = _random_padded(n, 6)
    k = padded.max_neighbors
    h = torch.randn(n, (lmax_in + 1) ** 2, c, dtype=torch.float64, generator=GEN)
    Y = torch.randn(n, k, 16, dtype=torch.float64, generator=GEN)
    R = torch.randn(n, k, tp.num_paths, c, dtype=torch.float64, generator=GEN)
    inputs = [t.clone().requires_grad_(True) for t in (h, Y, R)]
    ref = tp.reference(*inputs, padded.neighbors, padded.counts)
    out = tp(*inputs, padded.neighbors, padded.counts)
    assert torch.allclose(out, ref, atol=1e-12)
    weights = torch.randn(ref.shape, dtype=torch.float64, generator=GEN)
    # first derivatives: the kernel's own backward
    g_ref = torch.autograd.grad((ref * weights).sum(), inputs, retain_graph=True)
    g_out = torch.autograd.grad((out * weights).sum(), inputs, retain_graph=True)
    for a, b in zip(g_ref, g_out, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    # with create_graph the backward runs through the reference, keeping the graph
    g_ref = torch.autograd.grad((ref * weights).sum(), inputs, create_graph=True)
    g_out = torch.autograd.grad((out * weights).sum(), inputs, create_graph=True)
    # second derivatives (the kernel's backward falls back to the reference when needed)
    probes = [torch.randn(g.shape, dtype=g.dtype, generator=GEN) for g in g_out]
    second_ref = torch.autograd.grad(
        sum((g * v).sum() for g, v in zip(g_ref, probes, strict=True)), inputs
    )
    second_out = torch.autograd.grad(
        sum((g * v).sum() for g, v in zip(g_out, probes, strict=True)), inputs
    )
    for a, b in zip(second_ref, second_out, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("correlation", [1, 2, 3, 4])
def test_symmetric_contraction_kernel_matches_reference(correlation):
    sc = SymmetricContraction(3, 4, lmax_in=2, lmax_out=1, correlation=correlation, parity=True)
    sc = sc.double()
    for p in sc.parameters():
        p.requires_grad_(False)
    A = torch.randn(9, 9, 4, dtype=torch.float64, generator=GEN, requires_grad=True)
    species = Species.of(torch.tensor([0, 2, 1, 0, 2, 2, 1, 1, 0]), 3)
    ref = sc.reference(A, species)
    out = sc(A, species)
    assert torch.allclose(out, ref, atol=1e-12)
    w = torch.randn(ref.shape, dtype=torch.float64, generator=GEN)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), A, retain_graph=True)
    (g_out,) = torch.autograd.grad((out * w).sum(), A, retain_graph=True)
    assert torch.allclose(g_out, g_ref, atol=1e-12)  # the kernel's own backward
    (g_ref,) = torch.autograd.grad((ref * w).sum(), A, create_graph=True)
    (g_out,) = torch.autograd.grad((out * w).sum(), A, create_graph=True)
    if correlation == 1:  # linear in A: no second derivative
        return
    v = torch.randn(A.shape, dtype=torch.float64, generator=GEN)
    (h_ref,) = torch.autograd.grad((g_ref * v).sum(), A)
    (h_out,) = torch.autograd.grad((g_out * v).sum(), A)
    assert torch.allclose(h_out, h_ref, atol=1e-12)
