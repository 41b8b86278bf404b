"""The fused training step (C++ second-order engine) against autograd on the reference modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equipot.calculator import atoms_to_graph
from equipot.data.dataset import Batch
from equipot.graph import batch_graphs
from equipot.model.config import ModelConfig
from equipot.model.second_order import engine_runs, split_runs
from equipot.train import load_config
from equipot.train.fused_step import loss_and_gradients, loss_and_gradients_split, split_frames
from equipot.train.loss import LossFunction, LossWeights, Normalisation
from equipot.train.model import TrainingModel
from equipot.train.prepare import prepare
from equipot.train.trainer import Trainer
from tests.conftest import random_cluster, random_crystal
from tests.train_utils import tiny_config, write_emt

pytestmark = pytest.mark.usefixtures("kernels")

ELEMENTS = ["H", "C", "O", "Cu"]


def _model(seed: int = 0, learn_e0: bool | list[str] = True, **options) -> TrainingModel:
    options = {
        "channels": 8,
        "radial_hidden": [16, 16],
        "l_max": 2,
        "hidden_l_max": 1,
        "correlation": 3,
        "r_max": 3.5,
        "avg_num_neighbors": 6.0,
        "scale": 0.8,
        "shift": -0.2,
        **options,
    }
    config = ModelConfig(elements=ELEMENTS, e0={"H": -1.0, "C": -3.0}, **options)
    model = TrainingModel(
        config, seed=seed, dtype=torch.float64, learn_e0=learn_e0, learn_shift=True
    )
    with torch.no_grad():  # give the outer terms non-zero values
        model.e0_delta.copy_(torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=torch.float64))
        model.shift_delta.fill_(0.07)
    return model


def _batch(atoms_list, r_max: float, seed: int = 0) -> Batch:
    """Structures with random reference labels (stress only where 3D-periodic)."""
    rng = np.random.default_rng(seed)
    graph = batch_graphs([atoms_to_graph(a, r_max, torch.float64) for a in atoms_list])
    s, n = graph.num_systems, graph.num_atoms

    def t(x, dtype=torch.float64):
        return torch.as_tensor(np.asarray(x), dtype=dtype)

    has_stress = graph.pbc.all(dim=1)
    return Batch(
        graph=graph,
        energy=t(rng.normal(0.0, 1.0, s)),
        forces=t(rng.normal(0.0, 0.3, (n, 3))),
        stress=t(rng.normal(0.0, 0.02, (s, 3, 3))) * has_stress[:, None, None],
        has_forces=t([True] * (s - 1) + [False] if s > 2 else [True] * s, torch.bool),
        has_stress=has_stress,
        weight=t(rng.uniform(0.5, 2.0, s)),
        frames=np.arange(s),
    )


def _gradients(model, batch, loss, fused: bool):
    for p in model.parameters():
        p.grad = None
    n_atoms = batch.graph.n_atoms.numpy()
    norm = Normalisation.of(n_atoms, batch.has_forces.numpy(), batch.has_stress.numpy())
    stress = bool(loss.weights.stress) and bool(batch.has_stress.any())
    value, pred = loss_and_gradients(model, batch, loss, norm, stress=stress, fused=fused)
    grads = {
        n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for n, p in model.named_parameters()
    }
    return value, pred, grads


def _assert_close(fused, reference, rtol):
    for name, ref in reference.items():
        scale = float(ref.abs().max()) + 1e-300
        assert float((fused[name] - ref).abs().max()) <= rtol * scale, name


SYSTEMS = {
    "molecules": lambda: [random_cluster(7, seed=1), random_cluster(5, seed=4)],
    "cells": lambda: [random_crystal(5, seed=2), random_crystal(4, seed=6)],
    "mixed": lambda: [
        random_cluster(6, seed=3),
        random_crystal(5, seed=2),
        random_crystal(5, seed=3, pbc=(True, True, False), vacuum=3.0),
    ],
}


@pytest.mark.parametrize("systems", sorted(SYSTEMS))
@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_gradients_equal_autograd(systems, kind):
    """Energy, force and stress terms with config and element weights: fused = autograd."""
    model = _model(seed=1)
    batch = _batch(SYSTEMS[systems](), model.config.r_max, seed=2)
    # a small δ puts force and stress errors on both branches of the Huber loss
    loss = LossFunction.create(LossWeights(1.0, 10.0, 100.0), kind, 0.05, {"H": 2.5, "O": 0.5})
    value, pred, fused = _gradients(model, batch, loss, fused=True)
    ref_value, ref_pred, reference = _gradients(model, batch, loss, fused=False)
    assert value == pytest.approx(ref_value, rel=1e-12)
    assert torch.allclose(pred.forces, ref_pred.forces, rtol=0, atol=1e-12)
    _assert_close(fused, reference, 1e-10)
    assert all(float(g.abs().max()) > 0 for g in reference.values())


@pytest.mark.parametrize(
    "options",
    [
        {"l_max": 3, "correlation": 4, "hidden_l_max": 2},
        {"l_max": 2, "correlation": 2, "parity": False},
        {"l_max": 2, "hidden_l_max": 0, "radial_hidden": [16], "num_layers": 3},
        {"l_max": 1, "correlation": 1, "readout_hidden": 4},
    ],
    ids=["l3-nu4", "so3", "scalar-features", "nu1"],
)
def test_gradients_equal_autograd_architectures(options):
    model = _model(seed=2, **options)
    batch = _batch(SYSTEMS["mixed"](), model.config.r_max, seed=3)
    loss = LossFunction.create(LossWeights(1.0, 10.0, 100.0), "mse", 0.01, {})
    _, _, fused = _gradients(model, batch, loss, fused=True)
    _, _, reference = _gradients(model, batch, loss, fused=False)
    _assert_close(fused, reference, 1e-10)


def test_fixed_e0_stays_fixed():
    """E0 the user gave is not refined (mask 0): the fused step neither adds its δ to the
    energy nor gives it a gradient, as autograd (a model trained fused once drifted by
    Σ δ ≈ 35 eV per molecule from the E0 it saved)."""
    model = _model(seed=4, learn_e0=["O", "Cu"])  # H and C fixed
    assert model.e0_mask.tolist() == [0.0, 0.0, 1.0, 1.0]
    batch = _batch(SYSTEMS["mixed"](), model.config.r_max, seed=5)
    loss = LossFunction(LossWeights(1.0, 10.0, 100.0))
    _, pred, fused = _gradients(model, batch, loss, fused=True)
    _, ref_pred, reference = _gradients(model, batch, loss, fused=False)
    assert torch.allclose(pred.energy, ref_pred.energy, rtol=0, atol=1e-12)
    _assert_close(fused, reference, 1e-10)
    assert fused["e0_delta"][:2].abs().max() == 0.0
    assert fused["e0_delta"][2:].abs().max() > 0.0


def test_energy_only_and_forces_only_losses():
    model = _model(seed=3)
    batch = _batch(SYSTEMS["cells"](), model.config.r_max, seed=4)
    for weights in (LossWeights(1.0, 0.0, 0.0), LossWeights(0.0, 1.0, 0.0)):
        loss = LossFunction(weights)
        _, _, fused = _gradients(model, batch, loss, fused=True)
        _, _, reference = _gradients(model, batch, loss, fused=False)
        _assert_close(fused, reference, 1e-10)


def test_training_runs_fused_and_matches_reference(tmp_path, monkeypatch):
    """Three epochs through the trainer: the fused step runs, and the weights after it equal
    those of the autograd reference (EQUIPOT_KERNELS=0) to 1e-9."""
    data = write_emt(tmp_path / "emt.xyz", 10, seed=1)

    def run(directory):
        config = load_config(
            tiny_config(
                data,
                tmp_path / directory,
                optim={"max_epochs": 3, "scheduler": "constant", "batch_size": 4},
                loss={"kind": "huber", "huber_delta": 0.05},
            )
        )
        trainer = Trainer(config, prepare(config, verbose=False), verbose=False)
        trainer.train(progress_bar=False)
        return trainer

    fused = run("fused")
    # one engine pass per step, or one per thread where the batch is split (2 cores)
    assert engine_runs(fused.model.net) >= fused.state.step > 0
    monkeypatch.setenv("EQUIPOT_KERNELS", "0")
    monkeypatch.delenv("EQUIPOT_REQUIRE_KERNELS", raising=False)  # CI's strict mode
    reference = run("reference")
    assert engine_runs(reference.model.net) == 0
    for (name, a), b in zip(
        fused.model.state_dict().items(), reference.model.state_dict().values(), strict=True
    ):
        scale = float(b.abs().max()) + 1e-300
        assert float((a - b).abs().max()) <= 1e-9 * scale, name
    assert fused.state.history[-1]["train_loss"] == pytest.approx(
        reference.state.history[-1]["train_loss"], rel=1e-9
    )


def _part(atoms_list, whole: Batch, frames: list[int], r_max: float) -> Batch:
    """The frames ``frames`` of ``whole`` (built from ``atoms_list``) as a batch of their own."""
    graph = batch_graphs([atoms_to_graph(atoms_list[k], r_max, torch.float64) for k in frames])
    starts = np.concatenate([[0], np.cumsum(whole.graph.n_atoms.numpy())])
    rows = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in frames])
    pick = torch.as_tensor(frames)
    return Batch(
        graph=graph,
        energy=whole.energy[pick],
        forces=whole.forces[torch.as_tensor(rows)],
        stress=whole.stress[pick],
        has_forces=whole.has_forces[pick],
        has_stress=whole.has_stress[pick],
        weight=whole.weight[pick],
        frames=np.asarray(frames),
    )


@pytest.mark.parametrize("parts", [2, 3])
def test_split_batch_equals_whole_batch(parts):
    """A batch given as parts, their engine passes at once on two threads (one engine per
    part): the same loss and dL/dθ as the whole batch in one pass, to 1e-10 in float64."""
    model = _model(seed=5)
    atoms_list = [
        random_cluster(6, seed=3),
        random_crystal(5, seed=2),
        random_cluster(4, seed=8),
        random_crystal(5, seed=3, pbc=(True, True, False), vacuum=3.0),
        random_crystal(4, seed=6),
    ]
    r_max = model.config.r_max
    whole = _batch(atoms_list, r_max, seed=6)
    loss = LossFunction.create(LossWeights(1.0, 10.0, 100.0), "huber", 0.05, {"H": 2.5})
    value, pred, reference = _gradients(model, whole, loss, fused=True)

    n_atoms = whole.graph.n_atoms.numpy()
    groups = split_frames(np.arange(len(atoms_list)), n_atoms, parts)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(atoms_list)))
    batches = [_part(atoms_list, whole, g.tolist(), r_max) for g in groups]
    norm = Normalisation.of(n_atoms, whole.has_forces.numpy(), whole.has_stress.numpy())
    for p in model.parameters():
        p.grad = None
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        before = split_runs(model.net)
        total, preds = loss_and_gradients_split(model, batches, loss, norm, stress=True)
    finally:
        torch.set_num_threads(threads)
    assert split_runs(model.net) == before + 1
    assert total == pytest.approx(value, rel=1e-12)
    forces = {
        int(f): row
        for b, pr in zip(batches, preds, strict=True)
        for f, row in zip(b.frames, torch.split(pr.forces, b.graph.n_atoms.tolist()), strict=True)
    }
    whole_forces = torch.split(pred.forces, whole.graph.n_atoms.tolist())
    for k, row in forces.items():
        assert torch.allclose(row, whole_forces[k], rtol=0, atol=1e-12)
    split = {n: p.grad.clone() for n, p in model.named_parameters()}
    _assert_close(split, reference, 1e-10)


def test_split_frames_balances_atoms():
    groups = split_frames(np.arange(10, 16), np.array([9, 9, 30, 9, 9, 2]), 2)
    loads = sorted(int(np.array([9, 9, 30, 9, 9, 2])[g - 10].sum()) for g in groups)
    assert loads == [32, 36]  # 30 + 2 against 4 × 9
    assert all(list(g) == sorted(g) for g in groups)
    assert len(split_frames(np.arange(2), np.array([3, 3]), 4)) == 2  # no empty parts


def test_trainer_splits_batches_over_threads_and_matches_one_thread(tmp_path, monkeypatch):
    """With 2 threads the trainer runs each batch as one part per thread (it did: counted);
    the weights after 2 epochs equal those of a 1-thread run (unsplit) to 1e-9."""
    data = write_emt(tmp_path / "emt.xyz", 10, seed=2)
    monkeypatch.setattr(Trainer, "split_min_atoms", 1)  # tiny cells: split them anyway

    def run(directory, threads):
        config = load_config(
            tiny_config(data, tmp_path / directory, optim={"max_epochs": 2, "batch_size": 3})
        )
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            trainer = Trainer(config, prepare(config, verbose=False), verbose=False)
            trainer.train(progress_bar=False)
        finally:
            torch.set_num_threads(before)
        return trainer

    two, one = run("two", 2), run("one", 1)
    assert 0 < split_runs(two.model.net) <= two.state.step  # a 1-frame batch is not split
    assert split_runs(one.model.net) == 0
    for (name, a), b in zip(
        two.model.state_dict().items(), one.model.state_dict().values(), strict=True
    ):
        scale = float(b.abs().max()) + 1e-300
        assert float((a - b).abs().max()) <= 1e-9 * scale, name
