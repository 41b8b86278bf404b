"""The feature ceiling: no layer's aggregated messages larger than on the training data
(equipot.nn.feature_ceiling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from ase.io import read
from scipy.spatial.transform import Rotation

import equipot
from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.cli.main import main
from equipot.model.engine_pass import ceiling_holds
from equipot.nn.feature_ceiling import (
    _Recorder,
    block_norms,
    fit_feature_ceiling,
    set_feature_ceiling,
)
from equipot.physics.derivatives import hessian_from_graph
from tests.conftest import (
    assert_engine_equals_autograd_and_fd,
    engine_and_reference,
    evaluate,
    random_cluster,
    small_model,
)
from tests.train_utils import tiny_config, write_emt


def _norms_on(model, atoms) -> list:
    """Per layer, the block norms' maxima of ``atoms`` (N·(L+1)·C → (L+1, C))."""
    recorder = _Recorder()
    model.feature_ceiling = recorder
    with torch.no_grad():
        model.local_energies(atoms_to_graph(atoms, model.config.r_max, torch.float64))
    model.feature_ceiling = None
    return [recorder.tops[t] for t in sorted(recorder.tops)]


def _held_model(seed: int = 1, fraction: float = 0.5):
    """A model whose ceiling is ``fraction`` of the norms of a reference cluster: it holds on
    that cluster (and compressed copies of it)."""
    model = small_model(seed=seed).double()
    reference = random_cluster(7, seed=3)
    set_feature_ceiling(model, [(fraction * m).tolist() for m in _norms_on(model, reference)])
    return model, reference


_paths = engine_and_reference


def test_the_ceiling_changes_nothing_below_it_and_bounds_the_norms_above():
    model = small_model(seed=2).double()
    cluster = random_cluster(7, seed=4)
    plain = evaluate(model, cluster)
    tops = _norms_on(model, cluster)
    set_feature_ceiling(model, [m.tolist() for m in tops])
    same = evaluate(model, cluster)
    assert same["energy"] == plain["energy"]  # the identity where every block is at most m
    np.testing.assert_array_equal(same["forces"], plain["forces"])
    crushed = cluster.copy()
    crushed.positions *= 0.5  # twice as many neighbours, all closer
    graph = atoms_to_graph(crushed, model.config.r_max, torch.float64)
    assert ceiling_holds(model, graph)
    held = []
    for t, top in enumerate(tops):  # every block of A below m + δ (δ = softness·m = m)

        def check(layer, A, t=t, top=top):
            if layer == t:
                held.append(bool((block_norms(A) <= 2 * torch.as_tensor(top) + 1e-12).all()))
            return A

        probe = model.feature_ceiling
        model.feature_ceiling = _Chain(probe, check)
        with torch.no_grad():
            model.local_energies(graph)
        model.feature_ceiling = probe
    assert held == [True, True]
    set_feature_ceiling(model, None)
    unbounded = _Recorder()
    model.feature_ceiling = unbounded
    with torch.no_grad():
        model.local_energies(graph)
    assert any(bool((unbounded.tops[t] > 2 * top).any()) for t, top in enumerate(tops))


class _Chain(torch.nn.Module):
    def __init__(self, ceiling, after):
        super().__init__()
        self.ceiling, self.after = ceiling, after

    def forward(self, layer, A):
        return self.after(layer, self.ceiling(layer, A))


@pytest.mark.parametrize("scale", [1.0, 0.7], ids=["held", "compressed"])
def test_engine_equals_autograd_and_finite_differences_where_the_ceiling_holds(kernels, scale):
    model, atoms = _held_model()
    atoms.positions *= scale
    fast, slow = _paths(model)
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    assert fast.inference_pass(graph) is not None  # the engine applies the ceiling itself
    assert ceiling_holds(fast, graph) and ceiling_holds(slow, graph)
    assert_engine_equals_autograd_and_fd(model, atoms, fast, slow, graph)


def test_the_held_model_is_equivariant_and_its_hessian_is_the_autograd_one(kernels):
    model, atoms = _held_model(seed=5)
    rotation = Rotation.random(random_state=7).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T + 1.3
    a, b = evaluate(model, atoms), evaluate(model, turned)
    assert abs(a["energy"] - b["energy"]) <= 1e-10 * max(1.0, abs(a["energy"]))
    np.testing.assert_allclose(b["forces"], a["forces"] @ rotation.T, rtol=0, atol=1e-10)
    fast, slow = _paths(model)
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    hessian = hessian_from_graph(fast, graph)  # the second-order engine declines: autograd
    reference = hessian_from_graph(slow, graph)
    assert float((hessian - reference).abs().max()) <= 1e-9 * float(reference.abs().max())
    assert float((hessian - hessian.T).abs().max()) <= 1e-8 * float(reference.abs().max())


def test_the_ceiling_is_saved_and_exported_to_the_engine_hosts(tmp_path, kernels):
    model, atoms = _held_model(seed=6)
    path = model.save(tmp_path / "held.eqp")
    loaded = equipot.load_model(path)
    assert loaded.config.feature_ceiling == model.config.feature_ceiling
    a, b = evaluate(model, atoms), evaluate(loaded, atoms)
    assert a["energy"] == b["energy"]
    from equipot.model.inference import pack_engine

    packed = pack_engine(frozen_copy(loaded, torch.float64, "cpu"), torch.float64)
    assert packed["layer0.ceiling"].shape == (3, loaded.config.channels)
    with pytest.raises(ValueError, match="feature_ceiling"):
        small_model(feature_ceiling=[[[1.0] * 8]])  # one layer of two


def test_training_measures_the_ceiling_on_its_data(tmp_path):
    data = write_emt(tmp_path / "emt.xyz", 8, seed=3)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data, tmp_path / "run")))
    assert main(["train", str(config), "--set", "optim.max_epochs=1"]) == 0
    model = equipot.load_model(tmp_path / "run" / "best.eqp", dtype=torch.float64)
    tops = model.config.feature_ceiling
    assert tops is not None and len(tops) == model.config.num_layers
    frames = read(data, ":")
    # the measured maxima are the training frames' own: nothing above, equality somewhere
    train_ids = json_split(tmp_path / "run")
    seen = [_norms_on(model, frames[k]) for k in train_ids]
    for t, top in enumerate(tops):
        largest = np.max([s[t] for s in seen], axis=0)
        np.testing.assert_allclose(largest, np.array(top), rtol=1e-9, atol=1e-12)
    off = tmp_path / "off.yaml"
    off.write_text(
        yaml.safe_dump(tiny_config(data, tmp_path / "off", model={"feature_ceiling": "none"}))
    )
    assert main(["train", str(off), "--set", "optim.max_epochs=1"]) == 0
    assert equipot.load_model(tmp_path / "off" / "best.eqp").config.feature_ceiling is None


def json_split(run) -> list[int]:
    import json

    return json.loads((run / "data.json").read_text())["train"]["frames"]


def test_fit_feature_ceiling_is_the_maximum_over_the_dataset():
    model = small_model(seed=3).double()
    frames = [random_cluster(6, seed=s) for s in range(3)]
    per_frame = [_norms_on(model, f) for f in frames]

    class Frames:
        def __len__(self):
            return len(frames)

        def batch(self, positions, dtype):
            from types import SimpleNamespace

            from equipot.graph import batch_graphs

            graphs = [atoms_to_graph(frames[p], model.config.r_max, dtype) for p in positions]
            return SimpleNamespace(graph=batch_graphs(graphs))

    tops = fit_feature_ceiling(model, Frames(), batch_size=2)
    for t, top in enumerate(tops):
        np.testing.assert_allclose(
            np.array(top), np.max([p[t] for p in per_frame], axis=0), rtol=1e-12
        )
