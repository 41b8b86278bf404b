"""Neighbour list: pair sets against ASE, ordering, dtypes, input validation."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from equipot.geometry import neighbor_list

try:
    import vesin  # noqa: F401

    BACKENDS = ["cells", "vesin"]
except ImportError:  # pragma: no cover - vesin is a dependency, but keep the suite usable
    BACKENDS = ["cells"]

SKEWED = np.array([[5.1, 0.0, 0.0], [3.9, 4.4, 0.0], [-2.7, 3.1, 4.3]])


def pair_set(i: np.ndarray, j: np.ndarray, shifts: np.ndarray) -> set[tuple[int, ...]]:
    return {(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), shifts.tolist(), strict=True)}


def ase_pairs(positions, cell, pbc, cutoff, numbers=None) -> set[tuple[int, ...]]:
    numbers = np.ones(len(positions), int) if numbers is None else numbers
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    return pair_set(*ase_neighbor_list("ijS", atoms, cutoff))


def check_against_ase(positions, cell, pbc, cutoff, backend, numbers=None):
    """Compare with ASE; also check lengths, dtypes, order and the returned distances."""
    i, j, shifts = neighbor_list(positions, cell, pbc, cutoff, backend=backend)
    assert i.dtype == j.dtype == shifts.dtype == np.int64
    assert i.shape == j.shape == (len(i),) and shifts.shape == (len(i), 3)
    got = pair_set(i, j, shifts)
    assert len(got) == len(i), "duplicate pairs"
    assert got == ase_pairs(positions, cell, pbc, cutoff, numbers)
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    np.testing.assert_array_equal(order, np.arange(len(i)))  # sorted by (i, j, shift)
    vectors = positions[j] - positions[i] + shifts @ np.asarray(cell, float)
    assert np.all(np.linalg.norm(vectors, axis=1) < cutoff)
    assert not np.any(shifts[:, ~np.asarray(pbc)]), "non-zero shift along an open direction"
    return i, j, shifts


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(4))
def test_random_skewed_triclinic(backend, seed):
    rng = np.random.default_rng(seed)
    cell = SKEWED + rng.normal(scale=0.4, size=(3, 3))
    n = 40
    frac = rng.uniform(-0.6, 1.6, size=(n, 3))  # includes negative fractional coordinates
    numbers = rng.choice([1, 8, 29], size=n)
    check_against_ase(frac @ cell, cell, [True] * 3, rng.uniform(2.5, 4.5), backend, numbers)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strongly_skewed_cell(backend):
    # Same lattice as a near-cubic 4 Å cell, written with very oblique vectors.
    base = np.array([[4.0, 0.0, 0.0], [0.3, 4.1, 0.0], [0.2, -0.4, 3.9]])
    cell = np.array([[1, 0, 0], [3, 1, 0], [-2, 4, 1]]) @ base
    rng = np.random.default_rng(7)
    positions = rng.uniform(-1.0, 2.0, size=(6, 3)) @ cell
    check_against_ase(positions, cell, [True] * 3, 5.0, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cutoff", [4.0, 7.5])  # > half the cell, > the cell length
def test_long_cutoff_multiple_images(backend, cutoff):
    cell = np.array([[3.2, 0.0, 0.0], [1.1, 2.9, 0.0], [0.4, -0.8, 3.4]])
    positions = np.array([[0.1, 0.2, 0.3], [1.7, 1.1, 2.0], [-0.9, 2.5, 4.1]])
    i, j, shifts = check_against_ase(positions, cell, [True] * 3, cutoff, backend)
    self_images = (i == j) & np.any(shifts != 0, axis=1)
    assert self_images.any()
    same = (i == 0) & (j == 1)
    assert same.sum() > 1  # several images of the same neighbour


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("pbc", "zero_open"),
    [
        ((True, True, False), True),  # slab, zero c vector
        ((True, True, False), False),  # slab with a c vector
        ((True, False, False), True),  # wire
        ((False, True, False), False),  # wire along b
        ((False, True, True), False),
    ],
)
def test_mixed_periodicity(backend, pbc, zero_open):
    rng = np.random.default_rng(3)
    cell = SKEWED.copy()
    positions = rng.uniform(-0.5, 1.5, size=(30, 3)) @ cell
    if zero_open:
        cell[~np.array(pbc)] = 0.0
    check_against_ase(positions, cell, pbc, 3.8, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_molecule_zero_cell(backend):
    rng = np.random.default_rng(5)
    positions = rng.normal(scale=2.0, size=(25, 3)) - 40.0
    i, _, shifts = check_against_ase(positions, np.zeros((3, 3)), [False] * 3, 2.5, backend)
    assert len(i) > 0 and not shifts.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_molecule(backend):
    # Two small clusters very far apart: the bin grid must not blow up.
    rng = np.random.default_rng(6)
    positions = np.concatenate([rng.normal(size=(8, 3)), rng.normal(size=(8, 3)) + 5.0e4])
    check_against_ase(positions, np.zeros((3, 3)), [False] * 3, 1.5, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_atom(backend):
    pos = np.array([[0.3, -0.2, 7.0]])
    i, _, _ = check_against_ase(pos, np.zeros((3, 3)), [False] * 3, 3.0, backend)
    assert len(i) == 0
    i, j, shifts = check_against_ase(pos, SKEWED, [True] * 3, 6.0, backend)
    assert len(i) > 0 and np.all(i == 0) and np.all(j == 0)
    assert pair_set(i, j, shifts) == pair_set(i, j, -shifts)  # +-S both present


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_atoms(backend):
    pos = np.array([[0.0, 0.0, 0.0], [1.5, 0.2, -0.1]])
    i, j, shifts = check_against_ase(pos, np.zeros((3, 3)), [False] * 3, 2.0, backend)
    assert i.tolist() == [0, 1] and j.tolist() == [1, 0] and not shifts.any()
    check_against_ase(pos, np.diag([3.0, 3.0, 3.0]), [True] * 3, 3.5, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unwrapped_positions_give_shifts_for_inputs(backend):
    rng = np.random.default_rng(11)
    positions = rng.uniform(0.0, 1.0, size=(12, 3)) @ SKEWED
    far = positions + rng.integers(-3, 4, size=(12, 3)) @ SKEWED
    check_against_ase(far, SKEWED, [True] * 3, 4.0, backend)
    # Same pairs as the wrapped system, up to the shifts, hence the same distances.
    i0, j0, s0 = neighbor_list(positions, SKEWED, [True] * 3, 4.0, backend=backend)
    i1, j1, s1 = neighbor_list(far, SKEWED, [True] * 3, 4.0, backend=backend)
    d0 = np.linalg.norm(positions[j0] - positions[i0] + s0 @ SKEWED, axis=1)
    d1 = np.linalg.norm(far[j1] - far[i1] + s1 @ SKEWED, axis=1)
    np.testing.assert_allclose(np.sort(d0), np.sort(d1), atol=1e-10)


def test_backends_identical_and_empty():
    rng = np.random.default_rng(2)
    cell = SKEWED + rng.normal(scale=0.3, size=(3, 3))
    positions = rng.uniform(-0.5, 1.5, size=(60, 3)) @ cell
    results = [
        neighbor_list(positions, cell, [True, False, True], 4.2, backend=b) for b in BACKENDS
    ]
    results.append(neighbor_list(positions, cell, [True, False, True], 4.2))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    i, j, shifts = neighbor_list(np.zeros((0, 3)), np.eye(3), [True] * 3, 2.0)
    assert i.shape == j.shape == (0,) and shifts.shape == (0, 3) and shifts.dtype == np.int64


def test_cutoff_is_strict():
    i, _, _ = neighbor_list(np.zeros((1, 3)), np.eye(3) * 2.0, [True] * 3, 2.0, backend="cells")
    assert len(i) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"positions": [[0, 0, 0], [np.nan, 0, 0]]}, "atom 1 are not finite"),
        ({"positions": [[0, 0, 0], [0, 0, 1], [np.inf, 0, 0]]}, "atom 2 are not finite"),
        ({"positions": np.zeros((4, 2))}, r"positions must have shape \(N, 3\)"),
        ({"cell": np.eye(2)}, r"cell must have shape \(3, 3\)"),
        ({"pbc": [True, True]}, "pbc must have exactly 3 entries"),
        ({"cutoff": 0.0}, "cutoff must be a positive finite number"),
        ({"cutoff": -1.0}, "cutoff must be a positive finite number"),
        ({"cutoff": float("nan")}, "cutoff must be a positive finite number"),
        ({"cutoff": float("inf")}, "cutoff must be a positive finite number"),
        ({"cell": np.diag([3.0, 3.0, 0.0])}, "cell vector 2 has zero length"),
        ({"cell": [[3, 0, 0], [6, 0, 0], [0, 0, 3]]}, "periodic cell vectors 0 and 1 are parallel"),
        ({"cell": [[3, 0, 0], [0, 3, 0], [3, 3, 0]]}, "coplanar"),
        ({"backend": "fast"}, "backend must be one of"),
    ],
)
def test_invalid_inputs(kwargs, match):
    args = {"positions": np.zeros((2, 3)), "cell": np.eye(3) * 3.0, "pbc": [True] * 3}
    args |= {"cutoff": 2.0, "backend": "cells"} | kwargs
    with pytest.raises(ValueError, match=match):
        neighbor_list(**args)


def test_open_direction_may_be_degenerate():
    # Zero / parallel vectors are fine along open directions.
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    cell = np.array([[3.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    i, _, shifts = neighbor_list(pos, cell, [True, False, False], 1.5, backend="cells")
    assert len(i) == 2 and not shifts.any()
