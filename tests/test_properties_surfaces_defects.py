"""Surface and vacancy energies: exact bond counting for a nearest-neighbour pair potential,
consistency checks with EMT, and the vacancy migration barrier."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from equipot.properties.defects import vacancy_formation_energy, vacancy_migration_barrier
from equipot.properties.surfaces import (
    convert_miller,
    relaxed_bulk,
    surface_energy,
    surface_energy_convergence,
)

A = 3.6
R_NN = A / np.sqrt(2)
SIGMA, EPSILON, RC = 2.3, 0.4, 3.0  # RC between the first (2.55 Å) and second (3.6 Å) shell


def _nn_bond() -> float:
    """Pair energy at the nearest-neighbour distance, as ASE's (shifted) LennardJones has it."""
    lj = lambda r: 4 * EPSILON * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6)  # noqa: E731
    return lj(R_NN) - lj(RC)


def _lj() -> LennardJones:
    return LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC, smooth=False)


@pytest.mark.parametrize(
    ("miller", "bonds", "area"),
    [((1, 1, 1), 3, np.sqrt(3) / 2 * R_NN**2), ((1, 0, 0), 4, R_NN**2)],
)
def test_unrelaxed_surface_energy_counts_broken_bonds(miller, bonds, area):
    """γ = n_broken·(−φ)/(2·A_atom) for nearest-neighbour bonds φ."""
    cubic = bulk("Cu", "fcc", a=A, cubic=True)
    result = surface_energy(
        cubic, _lj(), miller, layers=4, vacuum=6.0, relax_slab=False, relax_bulk=False
    )
    exact = bonds * (-_nn_bond()) / (2 * area)
    assert exact > 0.01
    assert abs(result.gamma - exact) < 1e-9


def test_unrelaxed_vacancy_energy_counts_broken_bonds():
    """E_f = E/N − 12φ = 6φ − 12φ = −6φ for twelve nearest neighbours."""
    cubic = bulk("Cu", "fcc", a=A, cubic=True)
    result = vacancy_formation_energy(cubic, _lj(), supercell=(2, 2, 2), relax_bulk=False)
    assert result.n_atoms == 32
    assert abs(result.unrelaxed_energy - (-6 * _nn_bond())) < 1e-9
    assert result.energy < result.unrelaxed_energy  # relaxation lowers it


def test_emt_surface_energy_is_cell_independent_and_converged():
    primitive, e_atom = relaxed_bulk(bulk("Cu", "fcc", a=A), EMT())
    a0 = np.sqrt(2) * primitive.cell.lengths()[0]
    cubic, primitive = bulk("Cu", "fcc", a=a0, cubic=True), bulk("Cu", "fcc", a=a0)
    assert convert_miller((1, 0, 0), cubic.cell, primitive.cell) == (0, 1, 1)
    assert convert_miller((0, 1, 1), primitive.cell, cubic.cell) == (1, 0, 0)
    fixed = {"bulk_energy_per_atom": e_atom, "layers": 4}
    conventional = surface_energy(cubic, EMT(), (1, 1, 1), **fixed)
    scan = surface_energy_convergence(
        primitive, EMT(), (1, 1, 1), layers=(4, 6), vacuums=(6.0, 9.0)
    )
    # 4 atoms per layer in the cubic cell's (111) slab, 1 in the primitive cell's
    assert conventional.n_atoms == 4 * scan["thickness_series"][0]["n_atoms"]
    assert abs(conventional.gamma - scan["thickness_series"][0]["gamma"]) < 1e-6
    assert scan["converged"] and scan["delta_layers"] < 1e-4
    assert conventional.gamma < conventional.gamma_unrelaxed + 1e-9
    hundred = surface_energy(primitive, EMT(), (0, 1, 1), **fixed)
    assert hundred.gamma > conventional.gamma  # γ(100) > γ(111) in fcc


def test_emt_vacancy_migration_barrier_two_neb_engines():
    cubic = bulk("Cu", "fcc", a=3.59, cubic=True)  # close to EMT's a0 = 3.5898 Å
    options = {"supercell": (2, 2, 2), "images": 3, "relax_bulk": False}
    result = vacancy_migration_barrier(cubic, EMT(), engine="equipot", **options)
    assert result.converged and result.engine == "equipot.sim.neb"
    energies = result.energies
    assert abs(energies[-1]) < 1e-4  # equivalent end points
    assert np.allclose(energies, energies[::-1], atol=2e-3)  # symmetric hop
    assert np.argmax(energies) == len(energies) // 2
    assert 0.3 < result.barrier < 1.5
    reference = vacancy_migration_barrier(cubic, EMT(), engine="ase", **options)
    assert reference.converged and reference.engine == "ase.mep.NEB"
    assert abs(result.barrier - reference.barrier) < 2e-3
