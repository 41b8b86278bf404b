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
from equipot.train.evaluate import evaluate_file
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


def polar_molecules(n: int = 12, seed: int = 0) -> list:
    """Bent H–O–H-like clusters in vacuum: EMT energies and forces, and the dipole of fixed
    charges q_O = −0.8 e, q_H = +0.4 e (a ground truth the latent charges can reach)."""
    from ase import Atoms
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        angle = rng.uniform(1.6, 2.1)
        lengths = rng.uniform(0.95, 1.15, 2)
        positions = [
            [0.0, 0.0, 0.0],
            [lengths[0], 0.0, 0.0],
            [lengths[1] * np.cos(angle), lengths[1] * np.sin(angle), 0.0],
        ]
        atoms = Atoms("OH2", positions=positions)
        atoms.rotate(rng.uniform(0, 360), rng.normal(size=3), center=(0, 0, 0))
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["mu"] = np.array([-0.8, 0.4, 0.4]) @ atoms.positions
        frames.append(atoms)
    return frames


def test_long_range_model_trains_on_dipoles(tmp_path):
    """loss.label_weights.dipole trains μ = Σ q_i r_i of the latent charges: the dipole error
    falls well below that of the same run without the dipole term."""
    path = tmp_path / "water.xyz"
    write(path, polar_molecules(), format="extxyz")
    errors = {}
    for weight in (0.0, 20.0):
        config = tiny_config(
            path,
            tmp_path / f"run{weight}",
            data={"train": {"path": str(path), "labels": {"dipole": {"key": "mu"}}}},
            model={"long_range": {"charges": "latent"}},
            loss={"stress_weight": 0.0, "label_weights": {"dipole": weight}},
            optim={"max_epochs": 25, "lr": 0.02},
        )
        train(load_config(config), verbose=False)
        model = equipot.load_model(tmp_path / f"run{weight}" / "best.eqp")
        predicted = []
        frames = polar_molecules()
        for atoms in frames:
            atoms.calc = equipot.EquipotCalculator(model)
            predicted.append(atoms.get_dipole_moment())
        reference = np.array([atoms.info["mu"] for atoms in frames])
        errors[weight] = float(np.abs(np.array(predicted) - reference).mean())
        labels = {"dipole": {"key": "mu"}}  # `equipot evaluate` reports the same error
        metrics, _ = evaluate_file(model, DataSource(path=path, labels=labels))
        assert metrics["dipole_mae"] == pytest.approx(errors[weight], rel=1e-8)
    assert errors[20.0] < 0.5 * errors[0.0]
    assert errors[20.0] < 0.15  # e·Å; the dipoles are ≈ 0.5 e·Å (0.24 without the term)


def test_charge_labels_need_a_long_range_model(tmp_path):
    path = tmp_path / "water.xyz"
    write(path, polar_molecules(3), format="extxyz")
    loss = {"stress_weight": 0.0, "label_weights": {"dipole": 1.0}}
    config = tiny_config(path, tmp_path / "run", loss=loss)
    with pytest.raises(ValueError, match="charges of a model with long_range"):
        train(load_config(config), verbose=False)
