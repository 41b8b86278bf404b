"""Total charge through the data path, and training a long-range model end to end."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import write

import equipot
from equipot.data.cache import open_cache
from equipot.data.dataset import GraphDataset
from equipot.data.readers import DataSource
from equipot.train import load_config, train
from tests.train_utils import emt_frames, tiny_config


def charged_frames(n: int = 9):
    frames = emt_frames(n, seed=3)
    for k, atoms in enumerate(frames):
        if k % 3 == 1:
            atoms.info["charge"] = -1.0
        elif k % 3 == 2:
            atoms.info["total_charge"] = 2  # the second default key
    return frames


def test_total_charge_read_cached_and_batched(tmp_path):
    path = tmp_path / "ions.xyz"
    write(path, charged_frames(), format="extxyz")
    dataset = GraphDataset(open_cache(DataSource(path=path), 3.0, tmp_path / "cache"))
    batch = dataset.batch(np.arange(6))
    np.testing.assert_array_equal(batch.graph.charge.numpy(), [0, -1, 2, 0, -1, 2])
    custom = DataSource(path=path, charge_keys=["total_charge"])  # configurable keys
    dataset = GraphDataset(open_cache(custom, 3.0, tmp_path / "cache"))
    np.testing.assert_array_equal(dataset.batch(np.arange(3)).graph.charge.numpy(), [0, 0, 2])


def test_bad_total_charge_is_named(tmp_path):
    frames = charged_frames(3)
    frames[2].info["charge"] = "minus one"
    path = tmp_path / "bad.xyz"
    write(path, frames, format="extxyz")
    with pytest.raises(ValueError, match="frame 2: total charge"):
        open_cache(DataSource(path=path), 3.0, tmp_path / "cache")


@pytest.mark.parametrize("charges", ["latent", "qeq"])
def test_train_long_range_model(tmp_path, charges):
    path = tmp_path / "ions.xyz"
    write(path, charged_frames(), format="extxyz")
    long_range = {"charges": charges, "accuracy": 1e-4}
    config = load_config(
        tiny_config(
            path, tmp_path / "run", model={"long_range": long_range}, loss={"stress_weight": 0.0}
        )
    )
    result = train(config, verbose=False)
    model = equipot.load_model(tmp_path / "run" / "best.eqp")
    assert model.config.long_range.charges == charges
    assert np.isfinite(result.results["valid"]["energy_mae"])
    atoms = charged_frames(3)[1]
    atoms.calc = equipot.EquipotCalculator(model)
    assert atoms.get_charges().sum() == pytest.approx(-1.0, abs=1e-10)
