"""Building blocks against independent references."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3
from scipy.spatial.transform import Rotation

from equipot.nn.coupling import symmetric_coupling_basis
from equipot.nn.product_basis import SymmetricContraction
from equipot.nn.species import Species
from equipot.nn.spherical import SphericalHarmonics

GEN = torch.Generator().manual_seed(0)


def test_spherical_harmonics_match_e3nn():
    vectors = torch.randn(200, 3, dtype=torch.float64, generator=GEN) * 2.3
    ours = SphericalHarmonics(3)(vectors)
    ref = o3.spherical_harmonics([0, 1, 2, 3], vectors, normalize=True, normalization="component")
    assert torch.allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("parity", [True, False])
def test_symmetric_basis_is_equivariant_and_orthonormal(parity):
    lmax = 2
    for nu in (2, 3):
        for l_out in (0, 1):
            u = torch.as_tensor(symmetric_coupling_basis(lmax, nu, l_out, parity))
            flat = u.reshape(-1, u.shape[-1])
            assert torch.allclose(flat.T @ flat, torch.eye(u.shape[-1], dtype=u.dtype), atol=1e-10)
            rot = torch.as_tensor(Rotation.random(random_state=nu + 3 * l_out).as_matrix())
            if parity:
                rot = -rot  # improper: checks the parity selection rules too
            d_in = o3.Irreps.spherical_harmonics(lmax, p=-1 if parity else 1).D_from_matrix(rot)
            d_out = o3.Irrep(l_out, (-1) ** l_out).D_from_matrix(rot)
            a = torch.randn(u.shape[1], dtype=torch.float64, generator=GEN)

            def contract(x, u=u, nu=nu):
                out = u
                for _ in range(nu):
                    out = torch.tensordot(out, x, dims=([1], [0]))
                return out  # (M, K)

            assert torch.allclose(contract(d_in @ a), d_out @ contract(a), atol=1e-10)


def test_symmetric_contraction_strategies_agree():
    sc = SymmetricContraction(3, 4, lmax_in=2, lmax_out=1, correlation=3, parity=True).double()
    A = torch.randn(7, 9, 4, dtype=torch.float64, generator=GEN)
    species = Species.of(torch.tensor([0, 2, 1, 0, 2, 2, 1]), 3)
    together = sc.reference(A, species)
    sc.all_elements_below = 0
    grouped = sc.reference(A, species)
    assert torch.allclose(together, grouped, atol=1e-12)
    single = torch.stack(
        [sc.reference(A[i : i + 1], Species.of(species.index[i : i + 1], 3))[0] for i in range(7)]
    )
    assert torch.allclose(together, single, atol=1e-12)
