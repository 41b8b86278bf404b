"""Electrostatics against exact references: Madelung constants, charged cells, lattice sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, make_supercell

from equipot.electrostatics import COULOMB_CONSTANT, PairKernel, coulomb_energy
from equipot.electrostatics.realspace import periodic_pairs

SKEW = [[2, 1, 0], [0, 2, 1], [1, 0, 2]]  # supercell of the primitive cell, angles far from 90°

# Madelung constants referred to the nearest-neighbour distance r0 (E per ion pair = −M k_e/r0)
CRYSTALS = {
    "rocksalt": (lambda c: bulk("NaCl", "rocksalt", a=5.64, cubic=c), 5.64 / 2, 1.747565),
    "cesiumchloride": (
        lambda c: bulk("CsCl", "cesiumchloride", a=4.12, cubic=c),
        4.12 * np.sqrt(3) / 2,
        1.762675,
    ),
    "zincblende": (
        lambda c: bulk("ZnS", "zincblende", a=5.41, cubic=c),
        5.41 * np.sqrt(3) / 4,
        1.638055,
    ),
}
PRECISE = {"rocksalt": 1.7475645946, "cesiumchloride": 1.7626747731, "zincblende": 1.6380550534}


def ionic_charges(atoms: Atoms) -> np.ndarray:
    return np.where(atoms.numbers == atoms.numbers[0], 1.0, -1.0)


def madelung(atoms: Atoms, r0: float, **options) -> float:
    energy = float(coulomb_energy(atoms, ionic_charges(atoms), **options))
    return -energy / (len(atoms) / 2) * r0 / COULOMB_CONSTANT


@pytest.mark.parametrize("crystal", sorted(CRYSTALS))
@pytest.mark.parametrize("cell", ["conventional", "primitive", "skewed"])
@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_madelung_constants(crystal, cell, method):
    build, r0, constant = CRYSTALS[crystal]
    atoms = build(cell == "conventional")
    if cell == "skewed":
        atoms = make_supercell(build(False), SKEW)
        assert np.abs(atoms.cell.cellpar()[3:] - 90.0).min() > 20.0  # genuinely triclinic
    options = {"accuracy": 1e-10, "order": 8} if method == "pme" else {"accuracy": 1e-10}
    value = madelung(atoms, r0, method=method, **options)
    assert value == pytest.approx(PRECISE[crystal], rel=1e-8)
    assert value == pytest.approx(constant, rel=1e-6)


def test_independent_of_the_splitting():
    atoms = make_supercell(bulk("NaCl", "rocksalt", a=5.64), SKEW)
    atoms.rattle(0.15, seed=1)
    charges = np.random.default_rng(0).normal(size=len(atoms))
    charges -= charges.mean()
    energies = [
        float(coulomb_energy(atoms, charges, method="ewald", cutoff=c, accuracy=1e-12))
        for c in (5.0, 8.0, 11.0, 14.0)
    ]
    assert np.ptp(energies) < 1e-9 * abs(energies[0])


@pytest.mark.parametrize("order", [4, 6, 8])
def test_mesh_matches_ewald(order):
    atoms = make_supercell(bulk("ZnS", "zincblende", a=5.41), SKEW)
    atoms.rattle(0.2, seed=2)
    charges = np.random.default_rng(1).normal(size=len(atoms))
    charges -= charges.mean()
    ewald = float(coulomb_energy(atoms, charges, method="ewald", accuracy=1e-10))
    for accuracy in (1e-5, 1e-6):
        mesh = float(coulomb_energy(atoms, charges, method="pme", accuracy=accuracy, order=order))
        assert mesh == pytest.approx(ewald, rel=1e-5)


@pytest.mark.parametrize("method", ["ewald", "pme"])
@pytest.mark.parametrize("length", [5.0, 7.5])
def test_charged_cell_background(method, length):
    """One charge q in a cubic cell with a neutralising background: E = −α q² k_e / (2L),
    α = 2.8372974795 (simple cubic; Makov & Payne 1995), for every splitting."""
    atoms = Atoms("Na", positions=[[1.0, 2.0, 0.5]], cell=[length] * 3, pbc=True)
    for cutoff in (4.0, 9.0):
        energy = float(
            coulomb_energy(atoms, [2.0], method=method, cutoff=cutoff, accuracy=1e-10, order=8)
        )
        assert energy == pytest.approx(
            -2.8372974795 * 4.0 * COULOMB_CONSTANT / (2 * length), rel=1e-8
        )


def test_charged_cell_split_independent_for_gaussian_charges():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.2, seed=4)
    charges = np.linspace(-1.0, 1.5, len(atoms))  # net charge 1.0
    energies = [
        float(coulomb_energy(atoms, charges, method=m, smearing=1.0, accuracy=1e-10, **extra))
        for m, extra in (("ewald", {}), ("ewald", {"cutoff": 9.0}), ("pme", {"order": 8}))
    ]
    assert np.ptp(energies) < 1e-8 * abs(energies[0])


def lattice_sum(atoms: Atoms, charges: np.ndarray, kernel: PairKernel, cutoff: float) -> float:
    """½ k_e Σ'_{ij,n} q_i q_j v(r): brute force over images, for quickly decaying v."""
    positions = torch.as_tensor(atoms.positions)
    i, j, distances = periodic_pairs(positions, torch.as_tensor(atoms.cell.array), cutoff)
    q = torch.as_tensor(charges)
    return float(0.5 * COULOMB_CONSTANT * (q[i] * q[j] * kernel.value(distances)).sum())


@pytest.mark.parametrize("smearing", [None, 0.8])
@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_yukawa_matches_lattice_sum(smearing, method):
    """Screened e^{−κr}/r: the Ewald split (reciprocal k = 0 term included, no background)
    equals a brute-force lattice sum, also for a charged cell."""
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.2, seed=5)
    charges = np.linspace(-1.2, 1.0, len(atoms))
    kernel = PairKernel(smearing, kappa=0.9)
    reference = lattice_sum(atoms, charges, kernel, cutoff=45.0)
    energy = coulomb_energy(
        atoms, charges, method=method, smearing=smearing, kappa=0.9, accuracy=1e-10, order=8
    )
    assert float(energy) == pytest.approx(reference, rel=1e-8)


def test_direct_sum_open_system():
    rng = np.random.default_rng(3)
    positions = rng.uniform(0, 6.0, (12, 3))
    charges = rng.normal(size=12)
    atoms = Atoms("H12", positions=positions)
    for smearing, kappa in ((None, 0.0), (0.7, 0.0), (None, 0.5), (0.7, 0.5)):
        kernel = PairKernel(smearing, kappa)
        expected = 0.0
        for a in range(12):
            for b in range(a + 1, 12):
                r = torch.tensor(np.linalg.norm(positions[a] - positions[b]))
                expected += charges[a] * charges[b] * float(kernel.value(r))
        energy = coulomb_energy(atoms, charges, method="auto", smearing=smearing, kappa=kappa)
        assert float(energy) == pytest.approx(COULOMB_CONSTANT * expected, rel=1e-12)


def test_kernel_limits():
    r = torch.linspace(1e-4, 30.0, 400, dtype=torch.float64)
    gaussian = PairKernel(smearing=0.5)
    assert torch.allclose(gaussian.value(r[-50:]), 1.0 / r[-50:], rtol=1e-12)
    assert float(gaussian.value(r[:1])) == pytest.approx(np.sqrt(2 / np.pi) / 0.5, rel=1e-6)
    # Gaussian charges screen with the tail e^{κ²s²/2} e^{−κr}/r
    screened = PairKernel(smearing=0.5, kappa=0.7)
    tail = screened.tail_factor * torch.exp(-0.7 * r[-50:]) / r[-50:]
    assert torch.allclose(screened.value(r[-50:]), tail, rtol=1e-10)
    for kernel in (PairKernel(), gaussian, PairKernel(kappa=0.7), screened):
        for eta in (0.5, 1.0, 2.0):
            long_range = kernel.value(r) - kernel.short_range(r, eta)
            # v_lr is smooth and finite at r → 0, with the stated self term
            assert float(long_range[0]) == pytest.approx(kernel.self_value(eta), rel=1e-6)


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_polar_slab_independent_of_the_vacuum(method):
    """The slab correction removes the images' dipole interaction: the energy of a polar
    slab no longer depends on the vacuum (a 3D sum without it converges as 1/L)."""
    positions = [[0, 0, 0], [2.0, 2.0, 1.5], [2, 0, 0.3], [0, 2, 1.2]]
    charges = [1.0, -1.0, -0.5, 0.5]
    energies, uncorrected = [], []
    for height in (20.0, 40.0, 80.0):
        slab = Atoms("Na2Cl2", positions=positions, cell=[4, 4, height], pbc=(True, True, False))
        options = {"method": method, "accuracy": 1e-10, "order": 8}
        energies.append(float(coulomb_energy(slab, charges, **options)))
        slab.pbc = True
        uncorrected.append(float(coulomb_energy(slab, charges, **options)))
    assert np.ptp(energies) < 1e-9 * abs(energies[0])
    assert abs(uncorrected[0] - energies[0]) > 1e-2  # the correction matters


def test_bad_input_is_named():
    wire = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    wire.pbc = (True, False, False)
    with pytest.raises(ValueError, match="one direction only"):
        coulomb_energy(wire, ionic_charges(wire))
    sheared = bulk("NaCl", "rocksalt", a=5.64)  # fcc primitive cell: c not ⟂ (a, b)
    sheared.pbc = (True, True, False)
    with pytest.raises(ValueError, match="not perpendicular"):
        coulomb_energy(sheared, ionic_charges(sheared))
    crystal = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        coulomb_energy(crystal, [1.0, -1.0])
    with pytest.raises(ValueError, match="atom 1"):
        coulomb_energy(crystal, [1.0, np.nan, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="open systems only"):
        coulomb_energy(crystal, ionic_charges(crystal), method="direct")
    with pytest.raises(ValueError, match="below the charge smearing"):
        coulomb_energy(crystal, ionic_charges(crystal), smearing=1.0, split=0.5)
