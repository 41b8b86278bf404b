"""Training tensor heads on labels: reading keys and units, the loss, Born charges as ∂μ/∂r."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from equipot.data.dataset import GraphDataset
from equipot.data.readers import DataSource
from equipot.train.config import load_config
from equipot.train.evaluate import evaluate_file
from equipot.train.history import read_csv
from equipot.train.run import train
from tests.conftest import random_cluster
from tests.train_utils import tiny_config

CHARGE = {1: 0.3, 6: -0.1, 8: -0.4}  # fixed charges: μ = Σ q_i r_i, Z*_i = q_i·1
VOLUME = {1: 0.7, 6: 1.8, 8: 0.9}  # atomic polarisabilities, Å³


def labelled_molecules(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = random_cluster(5, seed=1000 * seed + k, box=3.0)
        atoms.numbers = rng.choice([1, 6, 8], size=len(atoms))
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        q = np.array([CHARGE[z] for z in atoms.numbers])
        q -= q.mean()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        atoms.info["REF_dipole"] = (q @ atoms.positions) / units.Debye  # in Debye
        atoms.info["alpha"] = np.eye(3).reshape(-1) * sum(VOLUME[z] for z in atoms.numbers)
        atoms.arrays["bec"] = np.eye(3).reshape(1, 9) * q[:, None]
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "molecules.xyz"
    write(path, labelled_molecules(16, 1), format="extxyz")
    return path


LABELS = {
    "dipole": {"key": "REF_dipole", "unit": "Debye"},
    "polarizability": {"key": "alpha", "unit": "Å^3"},
}


def config(data, out, **loss):
    raw = tiny_config(
        data,
        out,
        model={"heads": {"dipole": {}, "polarizability": {"channels": 4}}},
        loss={"forces_weight": 1.0, "stress_weight": 0.0, "label_weights": loss},
        optim={"max_epochs": 4, "batch_size": 4},
    )
    raw["data"] = {"train": {"path": str(data), "labels": LABELS}, "valid_count": 4}
    return load_config(raw)


def test_labels_read_in_equipot_units(data, tmp_path):
    from equipot.data.cache import open_cache
    from equipot.train.labels import label_weights, with_labels

    cfg = config(data, tmp_path / "run", dipole=1.0, bec=1.0)
    arch = cfg.check_model(["H", "C", "O"])
    source = with_labels(cfg.data.train, arch, label_weights(arch, cfg.loss.label_weights))
    assert set(source.labels) == {"dipole", "polarizability", "bec"}
    dataset = GraphDataset(open_cache(source, 3.0, tmp_path / "cache"))
    batch = dataset.batch(np.arange(3))
    frames = labelled_molecules(16, 1)[:3]
    dipoles = np.array([f.info["REF_dipole"] * units.Debye for f in frames])
    assert np.allclose(batch.labels["dipole"].numpy(), dipoles, atol=1e-12)
    alpha = batch.labels["polarizability"].numpy().reshape(-1, 3, 3)
    eps0 = units._eps0 / units._e * 1e-10  # e/(V·Å)
    expected = [4 * np.pi * eps0 * f.info["alpha"].reshape(3, 3) for f in frames]
    assert np.allclose(alpha, expected, atol=1e-12)
    assert batch.per_atom_labels == ("bec",)
    assert batch.labels["bec"].shape == (15, 9) and bool(batch.has_labels["bec"].all())


def test_training_on_dipoles_and_born_charges(data, tmp_path):
    cfg = config(data, tmp_path / "run", dipole=10.0, polarizability=10.0, bec=1.0)
    cfg.optim.max_epochs = 10  # 4 epochs leave the dipole error at 1.9 × the bound below
    result = train(cfg, verbose=False)
    history = read_csv(tmp_path / "run" / "log.csv")
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    # fixed charges and isotropic polarisabilities are fitted per element before the first
    # step (the data are exactly of that form); the atomic dipoles learn to stay small
    frames = labelled_molecules(16, 1)
    mu = np.mean([np.abs(f.info["REF_dipole"] * units.Debye).mean() for f in frames])
    q = np.mean(
        [np.abs(np.diagonal(f.arrays["bec"].reshape(-1, 3, 3), 0, 1, 2)).mean() for f in frames]
    )
    valid = result.results["valid"]
    assert valid["dipole_mae"] < 0.1 * mu
    assert valid["bec_mae"] < q
    alpha = 4 * np.pi * units._eps0 / units._e * 1e-10 * 5 * np.mean(list(VOLUME.values()))
    assert valid["polarizability_mae"] < 0.05 * alpha
    assert {"dipole_mae", "polarizability_mae", "bec_mae"} <= set(result.results["valid"])
    # evaluate_file's Born-charge and dipole errors equal those of the calculator's numbers
    from equipot import EquipotCalculator
    from equipot.model.io import load_model

    model = load_model(result.best_model)
    metrics, _ = evaluate_file(model, DataSource(path=data, labels={"dipole": LABELS["dipole"]}))
    bec_errors, dipole_errors = [], []
    for atoms in read(data, ":"):  # as written (positions rounded in the file)
        calc = EquipotCalculator(model)
        z = calc.get_property("born_effective_charges", atoms)
        bec_errors.append(np.abs(z.reshape(-1, 9) - atoms.arrays["bec"]).ravel())
        mu = calc.get_property("dipole", atoms)
        dipole_errors.append(np.abs(mu - atoms.info["REF_dipole"] * units.Debye))
    assert metrics["bec_mae"] == pytest.approx(np.concatenate(bec_errors).mean(), rel=1e-9)
    assert metrics["dipole_mae"] == pytest.approx(np.concatenate(dipole_errors).mean(), rel=1e-9)


def test_missing_label_is_named(data, tmp_path):
    raw = config(data, tmp_path / "run", dipole=1.0).model_dump(mode="json")
    raw["data"]["train"]["labels"]["dipole"]["key"] = "mu"
    with pytest.raises(
        ValueError, match=r"no frame has 'mu' \(keys in the first frame: .*REF_dipole"
    ):
        train(load_config(raw), verbose=False)


def test_label_weight_for_a_missing_head_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="not heads of the model"):
        train(config(data, tmp_path / "run", quadrupole=1.0), verbose=False)


def test_source_without_labels_keeps_old_cache_layout(tmp_path, data):
    from equipot.data.cache import open_cache

    dataset = GraphDataset(open_cache(DataSource(path=data), 3.0, tmp_path))
    batch = dataset.batch(np.arange(2))
    assert batch.labels == {} and torch.isfinite(batch.energy).all()
