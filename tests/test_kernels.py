"""Fused CPU kernels against the PyTorch reference: values, first and second derivatives."""

from __future__ import annotations

import pytest
import torch

from equipot.nn.neighborhood import pad_neighbors
from equipot.nn.product_basis import SymmetricContraction
from equipot.nn.species import Species
from equipot.nn.tensor_product import EdgeTensorProduct

pytestmark = pytest.mark.usefixtures("kernels")
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


def test_fused_edge_block_matches_reference():
    from equipot.nn.edge_block import EdgeBlock

    block = EdgeBlock(
        channels=4, lmax_in=1, lmax_sh=2, parity=True, num_radial=5, radial_hidden=[6, 7]
    )
    block = block.double()
    for p in block.parameters():
        p.requires_grad_(False)
    n = 6
    padded = _random_padded(n, 5)
    k = padded.max_neighbors
    Y = torch.randn(n, k, 9, dtype=torch.float64, generator=GEN, requires_grad=True)
    basis = torch.randn(n, k, 5, dtype=torch.float64, generator=GEN, requires_grad=True)
    h = torch.randn(n, 4, 4, dtype=torch.float64, generator=GEN, requires_grad=True)
    args = (Y, basis, padded.neighbors, padded.counts, h, 0.3)
    ref, out = block.reference(*args), block(*args)
    assert out.grad_fn.name().endswith("_FusedEdgeBlockBackward")
    assert torch.allclose(out, ref, atol=1e-12)
    w = torch.randn(ref.shape, dtype=torch.float64, generator=GEN)
    g_ref = torch.autograd.grad((ref * w).sum(), (Y, basis, h), retain_graph=True)
    g_out = torch.autograd.grad((out * w).sum(), (Y, basis, h), retain_graph=True)
    for a, b in zip(g_ref, g_out, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    g_ref = torch.autograd.grad((ref * w).sum(), (Y, basis, h), create_graph=True)
    g_out = torch.autograd.grad((out * w).sum(), (Y, basis, h), create_graph=True)
    v = [torch.randn(g.shape, dtype=g.dtype, generator=GEN) for g in g_out]
    s_ref = torch.autograd.grad(
        sum((g * x).sum() for g, x in zip(g_ref, v, strict=True)), (Y, basis, h)
    )
    s_out = torch.autograd.grad(
        sum((g * x).sum() for g, x in zip(g_out, v, strict=True)), (Y, basis, h)
    )
    for a, b in zip(s_ref, s_out, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_fused_edge_features_match_reference():
    from equipot.nn.edge_features import EdgeFeatures

    features = EdgeFeatures(r_max=3.0, l_max=3, num_radial=6, envelope_exponent=5)
    vectors = torch.randn(5, 4, 3, dtype=torch.float64, generator=GEN) * 1.5
    vectors[0, 0] = torch.tensor([3.5, 0.2, 0.1])  # beyond the cutoff: zero envelope
    vectors.requires_grad_(True)
    ref = features.reference(vectors)
    out = features(vectors)
    for a, b in zip(ref, out, strict=True):
        assert torch.allclose(a, b, atol=1e-13)
    weights = [torch.randn(t.shape, dtype=torch.float64, generator=GEN) for t in ref]
    loss_ref = sum((t * w).sum() for t, w in zip(ref, weights, strict=True))
    loss_out = sum((t * w).sum() for t, w in zip(out, weights, strict=True))
    (g_ref,) = torch.autograd.grad(loss_ref, vectors, retain_graph=True)
    (g_out,) = torch.autograd.grad(loss_out, vectors, retain_graph=True)
    assert torch.allclose(g_out, g_ref, atol=1e-12)
    (g_ref,) = torch.autograd.grad(loss_ref, vectors, create_graph=True)
    (g_out,) = torch.autograd.grad(loss_out, vectors, create_graph=True)
    probe = torch.randn(vectors.shape, dtype=torch.float64, generator=GEN)
    (h_ref,) = torch.autograd.grad((g_ref * probe).sum(), vectors)
    (h_out,) = torch.autograd.grad((g_out * probe).sum(), vectors)
    assert torch.allclose(h_out, h_ref, atol=1e-11)


@pytest.mark.parametrize(
    "residual,readout_hidden,elements", [(False, None, (1,)), (True, 5, (0, 2))]
)
def test_fused_node_update_matches_reference(residual, readout_hidden, elements):
    from equipot.nn.node_update import NodeUpdate

    node = NodeUpdate(
        num_elements=3,
        channels=4,
        lmax_in=1,
        lmax_a=2,
        lmax_out=1,
        correlation=3,
        parity=True,
        residual=residual,
        readout_hidden=readout_hidden,
    ).double()
    for p in node.parameters():
        p.requires_grad_(False)
    n = 7
    species = Species.of(torch.tensor([elements[i % len(elements)] for i in range(n)]), 3)
    A = torch.randn(n, 9, 4, dtype=torch.float64, generator=GEN, requires_grad=True)
    h = torch.randn(n, 4, 4, dtype=torch.float64, generator=GEN, requires_grad=True)
    args = (A, h, species.index, species.present)
    ref, out = node.reference(*args), node(*args)
    assert out[0].grad_fn.name().endswith("_FusedNodeUpdateBackward")
    for a, b in zip(ref, out, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    w = [torch.randn(t.shape, dtype=torch.float64, generator=GEN) for t in ref]
    loss = lambda outs: sum((t * x).sum() for t, x in zip(outs, w, strict=True))  # noqa: E731
    inputs = (A, h) if residual else (A,)
    g_ref = torch.autograd.grad(loss(ref), inputs, retain_graph=True)
    g_out = torch.autograd.grad(loss(out), inputs, retain_graph=True)
    for a, b in zip(g_ref, g_out, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    g_ref = torch.autograd.grad(loss(ref), inputs, create_graph=True)
    g_out = torch.autograd.grad(loss(out), inputs, create_graph=True)
    v = [torch.randn(g.shape, dtype=g.dtype, generator=GEN) for g in g_out]
    s_ref = torch.autograd.grad(sum((g * x).sum() for g, x in zip(g_ref, v, strict=True)), inputs)
    s_out = torch.autograd.grad(sum((g * x).sum() for g, x in zip(g_out, v, strict=True)), inputs)
    for a, b in zip(s_ref, s_out, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
