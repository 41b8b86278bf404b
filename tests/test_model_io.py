"""Model files are data: round trip, and refusal of anything that could run code."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import equipot
from equipot.model.io import read_model_metadata
from tests.conftest import evaluate, random_crystal


def test_round_trip(tmp_path, model):
    path = model.save(tmp_path / "m.eqp")
    loaded = equipot.load_model(path)
    assert loaded.config == model.config
    atoms = random_crystal(5, seed=1)
    a, b = evaluate(model, atoms, stress=True), evaluate(loaded, atoms, stress=True)
    assert a["energy"] == b["energy"]
    assert np.array_equal(a["forces"], b["forces"])
    meta = read_model_metadata(path)
    assert meta["format"] == "equipot-model" and meta["equipot_version"] == equipot.__version__
    assert int(meta["schema_version"]) >= 1


def test_calculator_accepts_a_path(tmp_path, model):
    path = model.save(tmp_path / "m.eqp")
    atoms = random_crystal(5, seed=1)
    atoms.calc = equipot.EquipotCalculator(str(path))
    assert atoms.get_potential_energy() == evaluate(model, atoms)["energy"]


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    for name, writer in {
        "pickle.eqp": lambda f: pickle.dump(_Exploit(), f),
        "torchsave.eqp": lambda f: torch.save({"model": _Exploit()}, f),
    }.items():
        path = tmp_path / name
        with open(path, "wb") as f:
            writer(f)
        with pytest.raises(ValueError, match="not an equipot model file"):
            equipot.load_model(path)
        assert not marker.exists()


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "junk.eqp"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not an equipot model file"):
        equipot.load_model(path)
    with pytest.raises(FileNotFoundError):
        equipot.load_model(tmp_path / "missing.eqp")


def test_calculator_recomputes_only_after_changes(model):
    atoms = random_crystal(4, seed=2)
    calc = equipot.EquipotCalculator(model)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    assert calc.check_state(atoms) == []
    atoms.positions[0, 0] += 1e-3
    assert calc.check_state(atoms) == ["positions"]
    assert atoms.get_potential_energy() != e0
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=False)
    assert "cell" in calc.check_state(atoms)
    atoms.numbers[1] = 8
    assert "numbers" in calc.check_state(atoms)
