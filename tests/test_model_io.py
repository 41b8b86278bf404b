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


def test_schema_1_file_loads_with_its_coordination_term_and_no_repulsion(tmp_path):
    """Files written before the baseline change (shift · ρ, no ZBL term) give the same energies."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from tests.conftest import evaluate, random_cluster, small_model

    old = small_model(shift=-0.3, repulsion=None)
    path = old.save(tmp_path / "new.eqp")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["config"])
    del config["repulsion"]
    config["schema_version"] = 1
    metadata.update(config=json.dumps(config), schema_version="1")
    legacy = tmp_path / "schema1.eqp"
    save_file(tensors, str(legacy), metadata=metadata)
    loaded = equipot.load_model(legacy)
    assert loaded.config.repulsion is None and loaded.config.shift == -0.3
    assert len(loaded.terms) == 0
    atoms = random_cluster(8, seed=3)
    atoms.positions *= 0.6  # close contacts: a repulsion term would show
    assert evaluate(loaded, atoms)["energy"] == evaluate(old, atoms)["energy"]
    fresh = equipot.ModelConfig(elements=["H"])
    assert fresh.repulsion is not None and fresh.shift == 0.0


def test_model_file_written_by_schema_1_code_gives_its_energies():
    """tests/data/schema1_hco.eqp was written by equipot before schema 2 (shift = −4.2 eV:
    a coordination-linear term), with the energy and forces it gave then."""
    import json
    from pathlib import Path

    from ase import Atoms

    data = Path(__file__).parent / "data"
    reference = json.loads((data / "schema1_hco.json").read_text())
    model = equipot.load_model(data / "schema1_hco.eqp")
    assert model.config.schema_version == 1 and model.config.shift == -4.2
    assert model.config.repulsion is None
    atoms = Atoms(numbers=reference["numbers"], positions=reference["positions"])
    for kernels in (True, False):
        out = evaluate(model, atoms) if kernels else None
        if not kernels:
            from equipot.calculator import atoms_to_graph, frozen_copy
            from equipot.physics.derivatives import predict

            slow = frozen_copy(model, torch.float64, "cpu").set_execution(
                kernels=False, memory_efficient=False
            )
            with torch.enable_grad():
                pred = predict(slow, atoms_to_graph(atoms, 3.5, torch.float64))
            out = {"energy": float(pred.energy.detach()), "forces": pred.forces.detach().numpy()}
        assert out["energy"] == pytest.approx(reference["energy"], rel=1e-13)
        assert np.abs(out["forces"] - np.array(reference["forces"])).max() < 1e-10
