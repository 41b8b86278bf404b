"""Tensor heads: O(3) equivariance with the right parity, exact index symmetries, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3
from scipy.spatial.transform import Rotation

import equipot
from equipot.model.heads.cartesian import PRESETS, cartesian_basis, irreps_string
from tests.conftest import random_cluster, random_crystal, small_model

TOL = 1e-10

HEADS = {
    "dipole": {},
    "polarizability": {},
    "bec": {},
    "piezo": "piezoelectric",
    "elastic": {"tensor": "elastic", "reduce": "mean"},
    "atomic_dipole": {"tensor": "vector", "per": "atom"},
    "quadrupole": {"tensor": "symmetric", "traceless": True},
    "axial": {"tensor": "vector", "pseudo": True, "per": "atom"},  # 1e from a cross product
}
SO3_HEADS = HEADS | {
    "chirality": {"tensor": "scalar", "pseudo": True},
    "gyration": {"tensor": "general", "pseudo": True},
}


@pytest.fixture(scope="module")
def o3_model():
    return small_model(parity=True, seed=3, heads=HEADS)


@pytest.fixture(scope="module")
def so3_model():
    return small_model(parity=False, seed=5, heads=SO3_HEADS)


def outputs(model, atoms) -> dict[str, np.ndarray]:
    graph = equipot.AtomicGraph.from_atoms(atoms, model.config.r_max)
    return {k: v.detach().numpy() for k, v in model(graph).outputs.items()}


def transform(tensor: np.ndarray, matrix: np.ndarray, pseudo: bool) -> np.ndarray:
    """R_a a' R_b b' … T_a'b'… (times det R for a pseudo-tensor); leading axis: atom/system."""
    for axis in range(1, tensor.ndim):
        tensor = np.moveaxis(np.tensordot(tensor, matrix, axes=([axis], [1])), -1, axis)
    return tensor * (np.linalg.det(matrix) if pseudo else 1.0)


def moved(atoms, matrix, shift):
    out = atoms.copy()
    out.positions = atoms.positions @ matrix.T + shift
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    return out


@pytest.mark.parametrize("which", ["o3", "so3"])
@pytest.mark.parametrize("kind", ["molecule", "crystal"])
def test_heads_equivariant_with_parity(which, kind, o3_model, so3_model):
    model = o3_model if which == "o3" else so3_model
    atoms = random_cluster(7, seed=3) if kind == "molecule" else random_crystal(5, seed=2)
    ref = outputs(model, atoms)
    assert set(ref) == set(model.config.heads) | {"charges"}
    for seed, reflect in [(0, 1.0), (1, -1.0), (2, -1.0)]:
        matrix = Rotation.random(random_state=seed).as_matrix() * reflect
        # a neutral system's dipole does not depend on the origin: translate too
        out = outputs(model, moved(atoms, matrix, np.array([0.4, -1.1, 2.3])))
        for name, value in ref.items():
            pseudo = name in model.config.heads and model.config.heads[name].pseudo
            expected = transform(value, matrix, pseudo)
            scale = max(np.abs(value).max(), 1e-3)
            assert np.abs(out[name] - expected).max() < TOL * scale, (name, reflect)


def test_pseudo_scalar_tells_mirror_images_apart(so3_model):
    chiral = random_cluster(7, seed=3)
    mirror = chiral.copy()
    mirror.positions[:, 0] *= -1
    a, b = outputs(so3_model, chiral)["chirality"], outputs(so3_model, mirror)["chirality"]
    assert abs(a[0]) > 1e-8
    assert abs(a[0] + b[0]) < TOL * abs(a[0])


def test_o3_model_cannot_make_a_pseudoscalar():
    with pytest.raises(ValueError, match="pseudo-tensors need model parity: false"):
        small_model(parity=True, heads={"chirality": {"tensor": "scalar", "pseudo": True}})


def test_index_symmetries_exact(o3_model):
    out = outputs(o3_model, random_crystal(5, seed=2))
    checks = {
        "polarizability": ["ji"],
        "quadrupole": ["ji"],
        "piezo": ["ikj"],
        "elastic": ["jikl", "ijlk", "klij"],
    }
    for name, permutations in checks.items():
        value = out[name][0]
        letters = "ijkl"[: value.ndim]
        for perm in permutations:
            swapped = np.einsum(f"{letters}->{perm}", value)
            assert np.abs(swapped - value).max() < 1e-15 * np.abs(value).max() * 10, name
        assert np.abs(value).max() > 1e-6
    assert abs(np.trace(out["quadrupole"][0])) < 1e-15
    assert np.abs(out["bec"] - np.swapaxes(out["bec"], 1, 2)).max() > 1e-6  # general


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_cartesian_basis_matches_e3nn(name):
    """Same irreps as e3nn's ReducedTensorProducts, same subspace (to its float32 basis)."""
    formula = PRESETS[name]
    ours = cartesian_basis(formula)
    assert np.abs(ours.q @ ours.q.T - np.eye(ours.dim)).max() < 1e-13
    if not formula:
        return
    letters = formula.split("=")[0]
    theirs = o3.ReducedTensorProducts(formula, **{c: "1o" for c in letters})
    assert irreps_string(ours.irreps) == str(theirs.irreps_out)
    q = theirs.change_of_basis.double().reshape(theirs.irreps_out.dim, -1).numpy()
    projector = ours.q.T @ ours.q
    assert np.abs(q @ projector - q).max() < 1e-5
    # and the projector is exactly the formula's symmetriser
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3,) * len(letters))
    sym = ours.project(t)
    for term in formula.split("=")[1:]:
        sign = -1.0 if term.startswith("-") else 1.0
        perm = np.einsum(f"{letters}->{term.lstrip('-')}", sym)
        assert np.abs(sign * perm - sym).max() < 1e-14


def test_born_charge_head_obeys_sum_rule_for_charged_systems(o3_model):
    atoms = random_cluster(6, seed=2)
    graph = equipot.AtomicGraph.from_atoms(atoms, 3.5)
    graph = graph.replace(charge=torch.tensor([-1.0], dtype=torch.float64))
    out = o3_model(graph).outputs
    assert torch.allclose(out["bec"].sum(0), -torch.eye(3, dtype=torch.float64), atol=1e-13)
    assert abs(float(out["charges"].detach().sum()) + 1.0) < 1e-13


def test_batched_equals_single(o3_model):
    systems = [random_cluster(5, seed=1), random_crystal(4, seed=6)]
    singles = [outputs(o3_model, a) for a in systems]
    graph = equipot.AtomicGraph.from_atoms_list(systems, 3.5)
    for name, value in o3_model(graph).outputs.items():
        expected = np.concatenate([s[name] for s in singles])  # systems or atoms in order
        assert np.abs(value.detach().numpy() - expected).max() < 1e-12, name


def test_model_file_round_trip_and_old_files(tmp_path, o3_model):
    path = o3_model.save(tmp_path / "heads.eqp")
    loaded = equipot.load_model(path)
    assert loaded.config == o3_model.config
    atoms = random_crystal(5, seed=2)
    for name, value in outputs(o3_model, atoms).items():
        assert np.array_equal(outputs(loaded, atoms)[name], value)
    plain = small_model(seed=1)
    assert plain.config.heads == {} and plain.heads is None
    assert equipot.load_model(plain.save(tmp_path / "plain.eqp")).heads is None


def test_head_options_validated():
    with pytest.raises(ValueError, match="couples to the electric field"):
        small_model(heads={"dipole": "symmetric"})
    with pytest.raises(ValueError, match="reserved"):
        small_model(heads={"forces": "vector"})
    with pytest.raises(ValueError, match="must permute the indices"):
        small_model(heads={"t": "ij=jk"})
    with pytest.raises(ValueError, match="forces every component to zero"):
        small_model(heads={"t": "ij=-ij"})
    with pytest.raises(ValueError, match="sum_rule only applies"):
        small_model(heads={"t": {"tensor": "vector", "per": "atom", "sum_rule": True}})


def test_energy_unchanged_by_heads_without_field():
    atoms = random_crystal(5, seed=2)
    plain, with_heads = small_model(seed=7), small_model(seed=7, heads={"dipole": {}})
    graph = equipot.AtomicGraph.from_atoms(atoms, 3.5)
    a, b = plain(graph).energy, with_heads(graph).energy
    assert float((a - b).abs().detach()) < 1e-12
