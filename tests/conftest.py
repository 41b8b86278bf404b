"""Shared fixtures: small random models and structures with ≥ 3 elements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import equipot
from equipot.kernels import cpu_kernels

ELEMENTS = ["H", "C", "O", "Cu"]


def small_model(
    parity: bool = True, l_max: int = 2, seed: int = 0, correlation: int = 3, **options
) -> equipot.EnergyModel:
    options.setdefault("channels", 8)
    options.setdefault("radial_hidden", [16, 16])
    options.setdefault("avg_num_neighbors", 8.0)
    options.setdefault("e0", {"H": -1.0, "C": -3.0, "O": -2.5, "Cu": -4.0})
    options.setdefault("scale", 0.7)
    options.setdefault("shift", -0.3)
    return equipot.build_model(
        ELEMENTS,
        r_max=3.5,
        l_max=l_max,
        num_layers=2,
        correlation=correlation,
        seed=seed,
        parity=parity,
        hidden_l_max=min(2, l_max),
        **options,
    )


def random_cluster(n: int = 8, seed: int = 0, box: float = 3.5) -> Atoms:
    """Random molecule-like cluster, atoms at least 0.9 Å apart."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < n:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm(p - q) > 0.9 for q in positions):
            positions.append(p)
    numbers = rng.choice([1, 6, 8, 29], size=n)
    numbers[:3] = [1, 6, 8]
    return Atoms(numbers=numbers, positions=positions)


def random_crystal(n: int = 6, seed: int = 0, pbc=(True, True, True), vacuum: float = 0.0) -> Atoms:
    """Random skewed triclinic cell (some lattice vectors shorter than 2·r_max)."""
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(3.2, 4.2, 3)) + rng.uniform(-0.9, 0.9, (3, 3)) * (1 - np.eye(3))
    atoms = random_cluster(n, seed)
    atoms.set_cell(cell)
    frac = rng.uniform(-0.2, 1.1, (n, 3))
    atoms.set_scaled_positions(frac)
    atoms.pbc = pbc
    # enforce a minimum image distance of 0.9 Å by regenerating if needed
    for _ in range(200):
        d = atoms.get_all_distances(mic=True) + np.eye(n) * 10
        if d.min() > 0.9:
            break
        atoms.set_scaled_positions(rng.uniform(-0.2, 1.1, (n, 3)))
    if vacuum:
        atoms.center(vacuum=vacuum, axis=[k for k in range(3) if not pbc[k]])
    return atoms


STRUCTURES = {
    "molecule": lambda: random_cluster(8, seed=1),
    "bulk": lambda: random_crystal(6, seed=2),
    "slab": lambda: random_crystal(6, seed=3, pbc=(True, True, False), vacuum=3.0),
    "wire": lambda: random_crystal(5, seed=4, pbc=(True, False, False), vacuum=3.0),
}


@pytest.fixture(params=sorted(STRUCTURES))
def structure(request) -> Atoms:
    return STRUCTURES[request.param]()


@pytest.fixture(scope="session")
def model() -> equipot.EnergyModel:
    return small_model()


@pytest.fixture(scope="session")
def model_l3() -> equipot.EnergyModel:
    return small_model(l_max=3, seed=1, correlation=4)


def evaluate(model, atoms: Atoms, dtype: str = "float64", stress: bool = False):
    atoms = atoms.copy()
    atoms.calc = equipot.EquipotCalculator(model, dtype=dtype)
    props = ["energy", "forces"] + (["stress"] if stress else [])
    atoms.calc.calculate(atoms, props)
    return atoms.calc.results


@pytest.fixture(scope="session")
def kernels():
    """The compiled C++ kernels; tests that need them skip when they cannot be built, except
    under ``EQUIPOT_REQUIRE_KERNELS=1`` (CI), where ``cpu_kernels()`` raises: a failure."""
    module = cpu_kernels()
    if module is None:
        pytest.skip("C++ kernels could not be built (EQUIPOT_REQUIRE_KERNELS=1 fails instead)")
    return module


def assert_engine_equals_autograd_and_fd(model, atoms: Atoms, fast, slow, graph, h: float = 1e-5):
    """The engine path (``fast``) = autograd (``slow``): energy and forces to 1e-10; and the
    forces = central differences of the calculator's energy (1e-6 of the largest force)."""
    from equipot.physics.derivatives import predict

    with torch.enable_grad():
        a, b = predict(fast, graph), predict(slow, graph)
    de, e = float((a.energy - b.energy).detach()), float(b.energy.detach())
    assert abs(de) <= 1e-10 * max(1.0, abs(e))
    scale = float(b.forces.abs().max())
    assert float((a.forces - b.forces).abs().max()) <= 1e-10 * scale
    calc = equipot.EquipotCalculator(model, dtype="float64")
    worst = 0.0
    for atom in range(len(atoms)):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[atom, axis] += sign * h
                moved.calc = calc
                energies.append(moved.get_potential_energy())
            fd = -(energies[0] - energies[1]) / (2 * h)
            worst = max(worst, abs(fd - float(a.forces[atom, axis])))
    assert worst <= 1e-6 * max(1.0, scale)


def engine_and_reference(model):
    """float64 inference copies of ``model``: the C++ engine path and the autograd reference."""
    from equipot.calculator import frozen_copy

    fast = frozen_copy(model, torch.float64, "cpu")
    slow = frozen_copy(model, torch.float64, "cpu").set_execution(
        kernels=False, memory_efficient=False
    )
    return fast, slow
