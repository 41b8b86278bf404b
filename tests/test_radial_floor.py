"""Issue 10, third round: the radial floor — the network reads no distance shorter than the
training data's shortest of each element pair (equipot.nn.radial_floor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

import equipot
from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.model.second_order import engine_runs
from equipot.train.config import ModelOptions
from equipot.train.finetune import merged_floor
from equipot.train.fused_step import loss_and_gradients
from equipot.train.loss import LossFunction, LossWeights, Normalisation
from equipot.train.model import TrainingModel
from tests.conftest import (
    assert_engine_equals_autograd_and_fd,
    engine_and_reference,
    evaluate,
    random_cluster,
    small_model,
)
from tests.test_fused_training import _batch

FLOOR = {"C-H": 1.0, "H-H": 1.6, "C-C": 1.4, "C-O": 1.2, "H-O": 0.95, "O-O": 2.0}


def _floored(seed: int = 0, **options) -> equipot.EnergyModel:
    options.setdefault("radial_floor_softness", 0.05)
    return small_model(seed=seed, shift=0.0, radial_floor=FLOOR, **options)


def _ch(r: float, spectator: bool = True) -> Atoms:
    """A C–H pair at ``r`` Å, with an O beside the C (so that more than one pair type is
    present) unless ``spectator`` is off."""
    atoms = Atoms("CH", positions=[[0, 0, 0], [r, 0, 0]])
    return atoms + Atoms("O", positions=[[0.0, 2.6, 0.4]]) if spectator else atoms


def _crushed(scale: float, seed: int = 3) -> Atoms:
    atoms = random_cluster(7, seed=seed)
    atoms.positions = (atoms.positions - atoms.positions.mean(0)) * scale
    return atoms


_paths = engine_and_reference


def test_the_floor_changes_nothing_where_no_pair_is_below_it():
    atoms = random_cluster(8, seed=1)
    shortest = min(
        atoms.get_distance(i, j) for i in range(len(atoms)) for j in range(i + 1, len(atoms))
    )
    low = {key: 0.9 * shortest for key in FLOOR}
    plain = small_model(seed=2, shift=0.0)
    floored = small_model(seed=2, shift=0.0, radial_floor=low)
    a, b = evaluate(plain, atoms), evaluate(floored, atoms)
    assert a["energy"] == b["energy"]
    assert np.array_equal(a["forces"], b["forces"])
    assert not floored.floor_holds(atoms_to_graph(atoms, 3.5, torch.float64))


def test_below_the_floor_the_network_is_flat_and_only_the_wall_pushes():
    """The C–H pair below its floor (1.0 Å, δ = 0.05 Å): the network's energy stops changing,
    so no minimum can open below the data; the ZBL wall alone gives the slope."""
    model = _floored(seed=1, repulsion=None)
    # 0.6 Å is 8 δ below the floor: r̃ = f − δ·tanh(8) is within 1e-8 Å of its limit
    energies = [evaluate(model, _ch(r, False))["energy"] for r in (0.3, 0.45, 0.6)]
    assert np.ptp(energies) < 1e-7
    plain = small_model(seed=1, shift=0.0, repulsion=None)
    free = [evaluate(plain, _ch(r, False))["energy"] for r in (0.3, 0.7)]
    assert abs(free[0] - free[1]) > 1e-3
    walled = _floored(seed=1)  # default ZBL: the energy rises monotonically as the pair closes
    rising = [evaluate(walled, _ch(r, False))["energy"] for r in (0.7, 0.6, 0.5, 0.4)]
    assert np.all(np.diff(rising) > 0)


def test_a_crushed_cluster_stays_bounded():
    """Compressed to a seventh of its size and beyond, every pair is far below its floor: the
    network reads the same (held) distances and its energy no longer changes; without the
    floor it keeps changing."""
    plain = small_model(seed=4, shift=0.0, repulsion=None)
    floored = _floored(seed=4, repulsion=None)
    held = [evaluate(floored, _crushed(s))["energy"] for s in (0.15, 0.12, 0.1)]
    assert np.ptp(held) < 1e-6
    free = [evaluate(plain, _crushed(s))["energy"] for s in (0.15, 0.12, 0.1)]
    assert np.ptp(free) > 1e-2


@pytest.mark.parametrize("atoms", [_ch(0.9), _crushed(0.6)], ids=["pair", "crushed"])
def test_engine_equals_autograd_and_finite_differences_with_held_edges(kernels, atoms):
    model = _floored(seed=5)
    fast, slow = _paths(model)
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    assert model.floor_holds(graph)
    assert fast.inference_pass(graph) is not None  # the engine takes held edges
    # forces are −∂E/∂r through the floor: autograd and central differences
    assert_engine_equals_autograd_and_fd(model, atoms, fast, slow, graph)


def test_hessian_with_held_edges_is_symmetric_and_matches_force_differences(kernels):
    model = _floored(seed=6)
    atoms = _crushed(0.6, seed=2)
    hess = equipot.hessian(model, atoms)
    assert np.allclose(hess, hess.T, atol=1e-9)
    calc = equipot.EquipotCalculator(model, dtype="float64")
    h = 1e-5
    columns = []
    for k in range(6):
        f = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions.flat[k] += sign * h
            moved.calc = calc
            f.append(moved.get_forces().ravel())
        columns.append(-(f[0] - f[1]) / (2 * h))
    assert np.allclose(np.array(columns).T, hess[:, :6], atol=1e-6 * np.abs(hess).max())


def test_rotation_and_translation_with_held_edges():
    model = _floored(seed=7)
    atoms = _crushed(0.6, seed=4)
    base = evaluate(model, atoms)
    rot = Rotation.random(random_state=3).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T + np.array([0.3, -1.2, 2.0])
    moved = evaluate(model, turned)
    assert abs(moved["energy"] - base["energy"]) <= 1e-10 * max(1.0, abs(base["energy"]))
    assert np.abs(moved["forces"] - base["forces"] @ rot.T).max() <= 1e-10 * max(
        1.0, np.abs(base["forces"]).max()
    )


def test_the_fused_training_step_hands_held_batches_to_autograd(kernels):
    config = _floored(seed=8).config
    model = TrainingModel(config, seed=8, dtype=torch.float64, learn_e0=True, learn_shift=False)
    loss = LossFunction.create(LossWeights(1.0, 10.0, 0.0), "mse", 0.01, {})

    def step(batch, fused):
        for p in model.parameters():
            p.grad = None
        norm = Normalisation.of(
            batch.graph.n_atoms.numpy(), batch.has_forces.numpy(), batch.has_stress.numpy()
        )
        before = engine_runs(model.net)
        value, _ = loss_and_gradients(model, batch, loss, norm, stress=False, fused=fused)
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return value, grads, engine_runs(model.net) - before

    held = _batch([_crushed(0.6), random_cluster(5, seed=4)], config.r_max, seed=1)
    value, grads, runs = step(held, None)
    ref_value, ref_grads, _ = step(held, False)
    assert runs == 0  # not the engine: it reads the edges unfloored
    assert value == pytest.approx(ref_value, rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))
    spread = _batch([random_cluster(5, seed=4)], config.r_max, seed=1)
    assert not model.net.floor_holds(spread.graph)
    assert step(spread, None)[2] == 1  # no held edge: the fused step runs


def test_training_sets_the_floor_from_the_data_and_fine_tuning_lowers_it():
    shortest = {"C-H": 0.98, "H-C": 0.98, "H-H": 1.5}
    floor = ModelOptions().architecture(["H", "C"], shortest)["radial_floor"]
    assert floor == pytest.approx(shortest, rel=2e-5) and all(
        floor[k] < d for k, d in shortest.items()
    )  # just below: the shortest training edge itself is never held
    off = ModelOptions(radial_floor="none").architecture(["H", "C"], shortest)
    assert off["radial_floor"] is None
    base = {"C-H": 1.0, "H-C": 1.0, "H-H": 1.4}
    merged = merged_floor(base, {"C-H": 0.9, "H-C": 0.9, "O-H": 0.95})
    assert merged == {"C-H": 0.9, "H-C": 0.9, "H-H": 1.4, "O-H": 0.95}
    assert merged_floor(base, None) is None
    with pytest.raises(ValueError, match="radial_floor"):
        small_model(radial_floor={"C-X": 1.0})
    with pytest.raises(ValueError, match="radial_floor"):
        small_model(radial_floor={"C-H": 9.0})


def test_floored_models_round_trip_and_pack_their_floor(tmp_path):
    from equipot.model.inference import pack_engine

    model = _floored(seed=9)
    path = tmp_path / "floored.eqp"
    model.save(path)
    loaded = equipot.load_model(path)
    assert loaded.config.radial_floor == model.config.radial_floor
    atoms = _ch(0.8)
    assert evaluate(loaded, atoms)["energy"] == pytest.approx(
        evaluate(model, atoms)["energy"], abs=1e-12
    )
    packed = pack_engine(frozen_copy(model, torch.float64, "cpu"), torch.float64)
    elements = model.config.elements
    table = packed["floor.table"].reshape(len(elements), len(elements))
    c, h = elements.index("C"), elements.index("H")
    assert float(table[c, h]) == float(table[h, c]) == FLOOR["C-H"]
    assert float(table[elements.index("Cu"), h]) == 0.0  # no floor for a pair never seen
    assert float(packed["floor.softness"]) == 0.05
