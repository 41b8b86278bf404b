"""Fine-tuning: frozen parameters, new elements, E0 re-fit, learning-rate groups, multi-head
replay (save / load / head selection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import equipot
from equipot.model.io import read_model_metadata
from equipot.train import load_config, train
from equipot.train.finetune import optimizer_groups, refit_e0
from equipot.transfer.elements import extend_model
from equipot.transfer.heads import head_names
from tests.train_utils import emt_frames, tiny_config, write_emt


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("base")
    data = write_emt(tmp / "cu_al.xyz", 10, seed=3)
    result = train(load_config(tiny_config(data, tmp / "run")), verbose=False)
    return result.best_model


def _finetune(tmp, base, data, **finetune):
    config = tiny_config(
        data, tmp / "ft", finetune={"from": str(base), **finetune}, optim={"max_epochs": 1}
    )
    return train(load_config(config), verbose=False)


def test_frozen_parameters_stay_bit_identical(base, tmp_path):
    data = write_emt(tmp_path / "target.xyz", 8, seed=5)
    result = _finetune(tmp_path, base, data, freeze=["embedding", "interactions"])
    before = equipot.load_model(base).state_dict()
    after = equipot.load_model(result.best_model).state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(".node.readout." in k for k in changed)  # only readouts moved


def test_freezing_layers_and_readout(base, tmp_path):
    data = write_emt(tmp_path / "target.xyz", 8, seed=6)
    result = _finetune(tmp_path, base, data, freeze=["layers.0", "readout"])
    before = equipot.load_model(base).state_dict()
    after = equipot.load_model(result.best_model).state_dict()
    for key in before:
        frozen = key.startswith("layers.0.") or ".node.readout." in key
        assert torch.equal(before[key], after[key]) == frozen or not frozen, key
    assert not torch.equal(before["embedding"], after["embedding"])
    assert all(torch.equal(before[k], after[k]) for k in before if ".node.readout." in k)


def test_new_element_starts_from_its_template(base, tmp_path):
    model = equipot.load_model(base)
    extended = extend_model(model, ["Al", "Cu", "Ni"])
    assert extended.config.elements == ["Al", "Ni", "Cu"]  # sorted by Z
    cu, ni = extended.config.elements.index("Cu"), extended.config.elements.index("Ni")
    assert torch.equal(extended.embedding[ni], extended.embedding[cu])
    w = extended.layers[0].node.product.weights[0]
    assert torch.equal(w[ni], w[cu])
    # the known elements are unchanged: Cu/Al structures get the same energy as before
    atoms = emt_frames(1, seed=11)[0]
    e_old = model(equipot.atoms_to_graph(atoms, 3.0, torch.float64)).energy
    e_new = extended(equipot.atoms_to_graph(atoms, 3.0, torch.float64)).energy
    assert torch.allclose(e_old, e_new, atol=1e-12)


def test_finetuning_adds_elements_found_in_the_data(base, tmp_path):
    data = write_emt(tmp_path / "ni.xyz", 9, seed=8, elements=("Cu", "Ni"))
    result = _finetune(tmp_path, base, data, e0="keep")
    model = equipot.load_model(result.best_model)
    assert model.config.elements == ["Al", "Ni", "Cu"]
    atoms = emt_frames(1, seed=12, elements=("Cu", "Ni"))[0]
    atoms.calc = equipot.EquipotCalculator(model)
    assert np.isfinite(atoms.get_forces()).all()


def test_e0_refit_recovers_a_new_level_of_theory(base, tmp_path):
    """Labels = the base model + per-element offsets (a "new level of theory"): the re-fit
    E0 must be the base E0 plus exactly those offsets."""
    model = equipot.load_model(base)
    offsets = {"Al": -1.7, "Cu": 0.45}
    frames = emt_frames(8, seed=4)
    for atoms in frames:
        atoms.calc = equipot.EquipotCalculator(model)
        energy = atoms.get_potential_energy() + sum(offsets[s] for s in atoms.symbols)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=atoms.get_forces())
    write(tmp_path / "shifted.xyz", frames)
    from equipot.data.cache import open_cache
    from equipot.data.dataset import GraphDataset
    from equipot.data.readers import DataSource

    cache = open_cache(DataSource(path=tmp_path / "shifted.xyz"), 3.0, tmp_path / "cache")
    zero = extend_model(model, model.config.elements, e0={})
    e0 = refit_e0(zero, GraphDataset(cache), dict(model.config.e0), fixed=set())
    for element, offset in offsets.items():
        assert e0[element] == pytest.approx(model.config.e0[element] + offset, abs=1e-8)


def test_learning_rate_groups(base):
    from equipot.train.optim import LRSchedule, make_optimizer

    model = equipot.load_model(base)
    config = load_config(tiny_config("x.xyz", "out", optim={"scheduler": "constant"}))
    groups = optimizer_groups(model, {"embedding": 0.1, "readout": 2.0})
    names = {g["name"]: g["lr_scale"] for g in groups}
    assert names == {"embedding": 0.1, "interactions": 1.0, "readout": 2.0}
    optimizer = make_optimizer(model, config.optim, {"embedding": 0.1, "readout": 2.0})
    LRSchedule(config.optim).apply(optimizer, 0.0, 1.0)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"embedding": 1e-3, "interactions": 1e-2, "readout": 2e-2})


def test_multihead_replay_saves_and_selects_heads(base, tmp_path):
    target = write_emt(tmp_path / "target.xyz", 8, seed=21)
    replay = write_emt(tmp_path / "replay.xyz", 8, seed=22)
    result = _finetune(tmp_path, base, target, head="dft", replay={"data": str(replay), "count": 6})
    path = result.best_model
    assert head_names(read_model_metadata(path)) == ["dft", "default"]
    dft = equipot.load_model(path)
    old = equipot.load_model(path, head="default")
    assert torch.equal(dft.embedding, old.embedding)  # one shared backbone
    assert not torch.equal(dft.layers[-1].node.readout[-1], old.layers[-1].node.readout[-1])
    atoms = emt_frames(1, seed=30)[0]
    energies = {}
    for head, model in (("dft", dft), ("default", old)):
        atoms.calc = equipot.EquipotCalculator(path, head=head)
        energies[head] = atoms.get_potential_energy()
        graph = equipot.atoms_to_graph(atoms, 3.0, torch.float64)
        assert energies[head] == pytest.approx(float(model(graph).energy[0].detach()), abs=1e-9)
    assert energies["dft"] != pytest.approx(energies["default"], abs=1e-6)
    with pytest.raises(ValueError, match=r"no head 'pbe'.*dft, default"):
        equipot.load_model(path, head="pbe")


def test_multihead_training_model_matches_saved_heads(base, tmp_path):
    """A mixed batch through the training model gives each system its own head's energy."""
    from equipot.train.finetune import attach, build_training_model, resolve_config
    from equipot.train.prepare import prepare

    target = write_emt(tmp_path / "target.xyz", 8, seed=31)
    replay = write_emt(tmp_path / "replay.xyz", 8, seed=32)
    config = load_config(
        tiny_config(
            target,
            tmp_path / "ft",
            finetune={"from": str(base), "head": "new", "replay": {"data": str(replay)}},
        )
    )
    config = resolve_config(config)
    prepared = attach(config, prepare(config, verbose=False), resumed=False, verbose=False)
    model = build_training_model(config, prepared)
    mixed = prepared.train.open()
    n_target = len(mixed.target)
    batch = mixed.batch([0, n_target, 1, n_target + 2])
    assert batch.graph.head.tolist() == [0, 0, 1, 1]
    energy = model(batch.graph).energy
    model.save(tmp_path / "m.eqp")
    for head, rows in (("new", [0, 1]), ("default", [2, 3])):
        saved = equipot.load_model(tmp_path / "m.eqp", head=head)
        ref = saved(batch.graph.replace(head=None)).energy
        reference = prepared.energy_reference() if head == "new" else mixed.replay_reference
        numbers = batch.graph.atomic_numbers.numpy()
        offsets = np.bincount(batch.graph.batch.numpy(), reference[numbers])
        assert torch.allclose(energy[rows], ref[rows] - torch.tensor(offsets[rows]), atol=1e-9)
