"""Per-edge features shared by all layers: Y_lm(r̂), the enveloped radial basis, the envelope.

    r = |v|,  û = v / r
    Y(v)      = M(û) · C                   M = [1, û, û⊗û, û⊗û⊗û, ...] (spherical.py)
    basis(v)  = b(r) · u(r)                b_n = √(2/r_c) sin(nπr/r_c)/r, u = envelope
    envelope  = u(r)

Like the edge block, this has a differentiable reference (composed modules) and, for
inference, :class:`_FusedEdgeFeatures`: one autograd node whose first-order backward is the
chain rule written out (checked against the reference to 1e-12 in the tests),

    ∂L/∂v = (∂L/∂û − (∂L/∂û·û) û)/r + (∂L/∂r) û
    ∂L/∂û = ∂M/∂û ᵀ (Cᵀ ∂L/∂Y)             ∂L/∂r = Σ_n g_n (b_n' u + b_n u') + g_u u'
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equipot.kernels import is_batched
from equipot.nn.radial import BesselBasis, PolynomialEnvelope
from equipot.nn.spherical import SphericalHarmonics


class EdgeFeatures(nn.Module):
    def __init__(self, r_max: float, l_max: int, num_radial: int, envelope_exponent: int):
        super().__init__()
        self.spherical_harmonics = SphericalHarmonics(l_max)
        self.radial_basis = BesselBasis(r_max, num_radial)
        self.envelope = PolynomialEnvelope(r_max, envelope_exponent)
        self.fused = True  # see EnergyModel.set_execution

    def forward(self, vectors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """vectors (..., 3) → Y (..., (l_max+1)²), radial basis (..., n), envelope (...)."""
        if self.fused:
            return _FusedEdgeFeatures.apply(vectors, self)
        return self.reference(vectors)

    def reference(self, vectors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lengths = torch.linalg.vector_norm(vectors, dim=-1)
        envelope = self.envelope(lengths)
        basis = self.radial_basis(lengths) * envelope.unsqueeze(-1)
        return self.spherical_harmonics(vectors, lengths), basis, envelope


class _FusedEdgeFeatures(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vectors, features: EdgeFeatures):
        ctx.features = features
        ctx.save_for_backward(vectors)
        return features.reference(vectors)

    @staticmethod
    def backward(ctx, gY, g_basis, g_env):
        (vectors,) = ctx.saved_tensors
        features: EdgeFeatures = ctx.features
        if torch.is_grad_enabled() or is_batched(gY):  # double backward / vmap: reference
            with torch.enable_grad():
                v = vectors.view_as(vectors)
                outs = features.reference(v)
                pairs = [
                    (o, g) for o, g in zip(outs, (gY, g_basis, g_env), strict=True) if g is not None
                ]
                (gv,) = torch.autograd.grad(
                    [o for o, _ in pairs], v, [g for _, g in pairs], create_graph=True
                )
            return gv, None
        r = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
        unit = vectors / r
        r = r.squeeze(-1)
        env, d_env = features.envelope.value_and_derivative(r)
        g_r = torch.zeros_like(r) if g_env is None else g_env * d_env
        if g_basis is not None:
            radial, d_radial = features.radial_basis.value_and_derivative(r)
            slope = d_radial * env.unsqueeze(-1) + radial * d_env.unsqueeze(-1)
            g_r = g_r + (g_basis * slope).sum(-1)
        if gY is None:
            return g_r.unsqueeze(-1) * unit, None
        g_unit = features.spherical_harmonics.unit_vjp(unit, gY)
        radial_part = (g_unit * unit).sum(-1, keepdim=True)
        gv = (g_unit - radial_part * unit) / r.unsqueeze(-1) + g_r.unsqueeze(-1) * unit
        return gv, None
