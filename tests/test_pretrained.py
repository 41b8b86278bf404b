"""The shipped pre-trained model: loads offline, reproduces its recorded validation errors,
and its name is accepted by ``finetune.from``."""

from __future__ import annotations

import fnmatch
import socket
import tomllib
from pathlib import Path

import pytest
import torch
from ase.io import read, write

import equipot
from equipot.train import load_config, train
from equipot.train.evaluate import evaluate_file


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_shipped_model_reproduces_its_recorded_validation_errors(offline):
    assert "organic-gfn2" in equipot.pretrained_available()
    path = equipot.pretrained_path()
    assert path.stat().st_size < 5 * 1024**2  # small enough for the wheel
    card = equipot.pretrained_card()
    assert equipot.pretrained().dtype == torch.float32  # shipped as float32
    for key in ("level_of_theory", "data_recipe", "intended_use", "training"):
        assert card[key], key
    model = equipot.pretrained(dtype=torch.float64)
    assert model.config.elements == ["H", "C", "N", "O", "F", "S"] == card["elements"]
    metrics, _ = evaluate_file(model, equipot.pretrained_path(kind="valid.xyz"))
    recorded = card["validation_errors"]
    assert metrics["num_frames"] == recorded["num_frames"] == card["data_recipe"]["valid_frames"]
    for key in ("energy_mae", "energy_per_atom_mae", "forces_mae", "forces_rmse"):
        assert metrics[key] == pytest.approx(recorded[key], rel=1e-6), key
    calc = equipot.EquipotCalculator(path, head="gfn2-xtb")  # the head name of the file
    atoms = read(equipot.pretrained_path(kind="valid.xyz"), 0)
    atoms.calc = calc
    assert torch.isfinite(torch.as_tensor(atoms.get_forces())).all()


def test_shipped_model_name_is_accepted_by_finetune_from(tmp_path):
    frames = read(equipot.pretrained_path(kind="replay.xyz"), ":6")
    write(tmp_path / "target.xyz", frames)
    config = {
        "dtype": "float32",
        "data": {"train": str(tmp_path / "target.xyz"), "valid_count": 2},
        "optim": {"batch_size": 2, "max_epochs": 1, "lr": 1e-3},
        "output": {"dir": str(tmp_path / "ft"), "progress": False, "plot": False},
        "finetune": {"from": "organic-gfn2", "freeze": ["embedding", "interactions"]},
    }
    result = train(load_config(config), verbose=False)
    tuned = equipot.load_model(result.best_model)
    base = equipot.pretrained()
    assert torch.equal(
        tuned.layers[0].edge.radial.weights[0], base.layers[0].edge.radial.weights[0]
    )
    with pytest.raises(ValueError, match="no shipped pre-trained model named 'nope'"):
        equipot.pretrained("nope")


def test_finetune_from_the_shipped_model_with_its_replay_frames(tmp_path):
    """The README's recipe: a new head trained on the target data while the shipped model's
    own replay frames train its gfn2-xtb head; the saved file holds both heads."""
    from equipot.model.io import read_model_metadata
    from equipot.transfer.heads import head_names

    frames = read(equipot.pretrained_path(kind="valid.xyz"), ":6")
    write(tmp_path / "target.xyz", frames)
    config = {
        "dtype": "float32",
        "data": {"train": str(tmp_path / "target.xyz"), "valid_count": 2},
        "optim": {"batch_size": 2, "max_epochs": 1, "lr": 1e-3},
        "output": {"dir": str(tmp_path / "ft"), "progress": False, "plot": False},
        "uncertainty": {"fit": False},
        "finetune": {"from": "organic-gfn2", "head": "pbe", "replay": {"count": 4}},
    }
    result = train(load_config(config), verbose=False)
    assert head_names(read_model_metadata(result.best_model)) == ["pbe", "gfn2-xtb"]
    old_head = equipot.load_model(result.best_model, head="gfn2-xtb")
    assert old_head.config.elements == equipot.pretrained().config.elements


def test_shipped_model_files_are_package_data():
    """Every file of the shipped model matches a package-data pattern, so wheels contain it."""
    root = Path(equipot.__file__).parent
    pyproject = root.parents[1] / "pyproject.toml"
    if not pyproject.is_file():  # installed from a wheel: the files are there (test above)
        pytest.skip("not a source checkout")
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    shipped = [equipot.pretrained_path(kind=k) for k in ("eqp", "json", "valid.xyz", "replay.xyz")]
    for path in shipped:
        rel = path.relative_to(root).as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns["equipot"]), rel
