"""Training: config validation, loss normalisation, the loop, checkpoints, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import equipot
from equipot.data import DataSource, GraphDataset, open_cache
from equipot.model.io import read_model_metadata
from equipot.physics.derivatives import predict
from equipot.train import load_config, train
from equipot.train.checkpoint import load_checkpoint
from equipot.train.config import ModelOptions
from equipot.train.loss import LossFunction, LossWeights, Normalisation, loss_terms
from equipot.train.model import TrainingModel
from equipot.train.optim import EMA
from tests.train_utils import emt_frames, tiny_config, write_emt


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_emt(tmp_path_factory.mktemp("data") / "emt.xyz", 12, seed=0)


def test_unknown_and_mistyped_keys_are_named(tmp_path, data):
    config = tiny_config(data, tmp_path)
    config["optim"]["learning_rat"] = 0.1
    with pytest.raises(ValueError, match=r"optim\.learning_rat: unknown key"):
        load_config(config)
    config = tiny_config(data, tmp_path)
    config["data"]["train"] = {"path": str(data), "energy_kye": "E"}
    with pytest.raises(ValueError, match=r"data\.train\.energy_kye: unknown key"):
        load_config(config)
    with pytest.raises(ValueError, match=r"optim\.batch_size: Input should be a valid integer"):
        load_config(tiny_config(data, tmp_path), ["optim.batch_size=many"])
    with pytest.raises(ValueError, match=r"model\.l_max"):
        load_config(tiny_config(data, tmp_path), ["model.l_max=7", "model.elements=[Cu]"])
    with pytest.raises(ValueError, match="unknown energy unit 'kcal'"):
        load_config(tiny_config(data, tmp_path), ["data.train.energy_unit=kcal"])


def test_overrides_are_typed_and_config_file_round_trips(tmp_path, data):
    config = load_config(
        tiny_config(data, tmp_path), ["optim.lr=2e-3", "data.train.energy_key=REF_energy"]
    )
    assert config.optim.lr == 0.002 and config.data.train.energy_key == "REF_energy"
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))  # JSON is YAML
    assert load_config(path) == config


def test_model_options_mirror_model_config():
    fields = equipot.ModelConfig.model_fields
    for name, field in ModelOptions.model_fields.items():
        assert name in fields, name
        statistics = ("elements", "e0", "scale", "shift", "avg_num_neighbors")
        if name not in (*statistics, "repulsion", "radial_floor", "feature_ceiling"):  # from data
            assert field.get_default(call_default_factory=True) == fields[name].get_default(
                call_default_factory=True
            ), name
    # training holds the network at the data's shortest distances (a model built without data
    # has no floor) and keeps ModelConfig's covalent ZBL window
    assert (
        ModelOptions().radial_floor == "data"
        and equipot.ModelConfig(elements=["H"]).radial_floor is None
    )
    # and measures the feature ceiling after training (a model built without data has none)
    assert ModelOptions().feature_ceiling == "data"
    assert equipot.ModelConfig(elements=["H"]).feature_ceiling is None
    assert ModelOptions().repulsion.switch == "covalent"


def test_loss_over_shards_adds_up_to_the_global_batch(tmp_path, data):
    """Per-process losses (normalised by global counts) sum to the whole-batch loss."""
    dataset = GraphDataset(open_cache(DataSource(path=data), 3.0, tmp_path))
    model = equipot.build_model(
        ["Al", "Cu"], r_max=3.0, l_max=1, channels=8, radial_hidden=[16, 16], correlation=2, seed=0
    )
    loss_fn = LossFunction(LossWeights(1.0, 10.0, 5.0))
    positions = np.array([0, 3, 4, 7, 9])
    meta = dataset.frame_arrays(["has_forces", "has_stress"])
    norm = Normalisation.of(
        dataset.num_atoms()[positions], meta["has_forces"][positions], meta["has_stress"][positions]
    )

    def loss(pos):
        batch = dataset.batch(pos)
        pred = predict(model, batch.graph, forces=True, stress=True)
        return sum(loss_terms(pred, batch, loss_fn, norm).values()).detach()

    whole = float(loss(positions))
    shards = float(loss(positions[0::2]) + loss(positions[1::2]))
    assert whole == pytest.approx(shards, rel=1e-12)
    batch = dataset.batch(positions)
    pred = predict(model, batch.graph, forces=True, stress=True)
    n = batch.graph.n_atoms.double()
    expected = (
        ((pred.energy.detach() - batch.energy) / n).square().mean()
        + 10.0 * (pred.forces.detach() - batch.forces).square().mean()
        + 5.0 * (pred.stress.detach() - batch.stress).square().mean()
    )
    assert whole == pytest.approx(float(expected), rel=1e-12)


def test_weighted_and_huber_loss(tmp_path, data):
    """Config-type, per-config and per-element weights, and Huber's two regimes."""
    from ase.io import read, write

    frames = read(data, ":")
    for k, atoms in enumerate(frames):
        atoms.info["config_type"] = "rare" if k % 3 == 0 else "bulk"
        atoms.info["config_weight"] = 2.0 if k == 3 else 1.0
    path = tmp_path / "typed.xyz"
    write(path, frames, format="extxyz")
    dataset = GraphDataset(open_cache(DataSource(path=path), 3.0, tmp_path))
    dataset.set_config_type_weights({"rare": 5.0})
    positions = np.arange(6)
    batch = dataset.batch(positions)
    assert batch.weight.tolist() == [5.0, 1.0, 1.0, 10.0, 1.0, 1.0]
    model = equipot.build_model(
        ["Al", "Cu"], r_max=3.0, l_max=1, channels=8, radial_hidden=[16, 16], correlation=2, seed=0
    )
    pred = predict(model, batch.graph, forces=True)
    norm = Normalisation(energy=6, forces=3 * 24, stress=1)
    fn = LossFunction.create(LossWeights(1.0, 10.0, 0.0), "mse", 0.01, {"Al": 3.0})
    terms = {k: float(v.detach()) for k, v in loss_terms(pred, batch, fn, norm).items()}
    dE = ((pred.energy - batch.energy) / batch.graph.n_atoms).detach()
    assert terms["energy"] == pytest.approx(float((batch.weight * dE**2).sum() / 6))
    per_atom = batch.weight[batch.graph.batch] * torch.where(
        batch.graph.atomic_numbers == 13, 3.0, 1.0
    )
    dF2 = (pred.forces - batch.forces).detach().square().sum(1)
    assert terms["forces"] == pytest.approx(10.0 * float((per_atom * dF2).sum()) / 72)
    huber = LossFunction(LossWeights(1, 1, 1), "huber", 0.5)
    x = torch.tensor([0.1, -0.3, 2.0])
    assert huber.penalty(x).tolist() == pytest.approx([0.01, 0.09, 2 * 0.5 * (2.0 - 0.25)])


def test_ema_average():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # d = min(0.5, 2/11)
    assert float(ema.shadow[0]) == pytest.approx(1 - 2 / 11)
    ema.update(model)  # d = min(0.5, 3/12)
    assert float(ema.shadow[0]) == pytest.approx(1 - (2 / 11) * (3 / 12))


def test_training_learns_and_writes_its_files(tmp_path, data):
    config = load_config(
        tiny_config(data, tmp_path / "run", optim={"max_epochs": 4}, output={"plot": True})
    )
    result = train(config, verbose=False)
    run = result.run_dir
    for name in (
        "config.yaml",
        "data.json",
        "log.csv",
        "learning_curve.png",
        "checkpoint.pt",
        "best.eqp",
        "final.eqp",
        "results.json",
    ):
        assert (run / name).is_file(), name
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    history = load_checkpoint(run / "checkpoint.pt")["history"]
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert load_config(run / "config.yaml") == config
    meta = read_model_metadata(result.best_model)
    assert json.loads(meta["extra"])["train_config"] == config.model_dump(mode="json")
    # the saved model (E0 included) reproduces the validation errors the trainer measured
    valid = result.results["valid"]
    assert valid["num_frames"] == 3 and valid["forces_mae"] > 0
    assert result.results["best_valid_loss"] == pytest.approx(
        min(row["valid_loss"] for row in history)
    )


def test_exported_model_equals_training_model_plus_references():
    from ase.data import atomic_numbers

    config = equipot.ModelConfig(
        elements=["Al", "Cu"],
        r_max=3.0,
        l_max=1,
        channels=8,
        radial_hidden=[16, 16],
        e0={"Al": -1.0, "Cu": -2.0},
        scale=0.5,
        shift=0.1,
    )
    net = TrainingModel(config, seed=0, dtype=torch.float64, learn_e0=True, learn_shift=True)
    with torch.no_grad():
        net.e0_delta.copy_(torch.tensor([0.3, -0.2]))
        net.shift_delta.fill_(0.05)
    atoms = emt_frames(1)[0]
    graph = equipot.AtomicGraph.from_atoms(atoms, 3.0)
    reference = sum(config.e0[s] for s in atoms.get_chemical_symbols())
    trained = predict(net, graph, forces=True)
    exported = predict(net.export(), graph, forces=True)
    energy = float(trained.energy.detach()) + reference
    assert float(exported.energy.detach()) == pytest.approx(energy, rel=1e-12)
    assert torch.allclose(exported.forces, trained.forces, atol=1e-12)
    assert net.export().config.e0 == pytest.approx({"Al": -0.7, "Cu": -2.2})
    assert net.export().config.shift == pytest.approx(0.15)
    assert atomic_numbers["Al"] < atomic_numbers["Cu"]  # element order used above


def test_extend_continues_exactly(tmp_path, data):
    """k epochs + extend to K epochs == K epochs uninterrupted (same seed, a schedule that
    does not depend on the plan's length): same weights."""
    full = load_config(tiny_config(data, tmp_path / "full", optim={"max_epochs": 3}))
    train(full, verbose=False)
    part = load_config(tiny_config(data, tmp_path / "part", optim={"max_epochs": 1}))
    train(part, verbose=False)
    with pytest.raises(ValueError, match="--resume"):
        train(part, verbose=False)
    resumed = load_config(tiny_config(data, tmp_path / "part", optim={"max_epochs": 3}))
    with pytest.raises(ValueError, match=r"optim\.max_epochs: 1 → 3.*--extend"):
        train(resumed, resume=True, verbose=False)
    train(resumed, extend=True, verbose=False)  # plateau schedule: extending = one long run
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert a["progress"]["epoch"] == b["progress"]["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"], strict=True):
        assert torch.equal(x, y)
    assert [r["valid_loss"] for r in a["history"]] == [r["valid_loss"] for r in b["history"]]


def test_test_split_by_fraction(tmp_path, data):
    config = load_config(
        tiny_config(data, tmp_path / "run", data={"test_fraction": 0.25}, optim={"max_epochs": 1})
    )
    result = train(config, verbose=False)
    split = json.loads((result.run_dir / "data.json").read_text())
    assert len(split["test"]["frames"]) == 3 and result.results["test"]["num_frames"] == 3
    assert not set(split["test"]["frames"]) & set(
        split["train"]["frames"] + split["valid"]["frames"]
    )
    with pytest.raises(ValueError, match="test file or test_fraction"):
        load_config(tiny_config(data, tmp_path, data={"test_fraction": 0.2, "test": str(data)}))


def test_time_budget_stops_training(tmp_path, data):
    config = load_config(
        tiny_config(data, tmp_path / "run", optim={"max_epochs": 1000, "max_time_min": 0.002})
    )
    result = train(config, verbose=False)
    assert 1 <= result.results["epochs"] < 1000
    assert (result.run_dir / "best.eqp").is_file()


def test_stage_two_switches_loss_weights(tmp_path, data):
    config = load_config(
        tiny_config(
            data,
            tmp_path / "run",
            optim={
                "max_epochs": 4,
                "stage_two": {
                    "start_fraction": 0.5,
                    "energy_weight": 100.0,
                    "forces_weight": 1.0,
                    "lr": 0.001,
                },
            },
        )
    )
    result = train(config, verbose=False)
    history = load_checkpoint(result.run_dir / "checkpoint.pt")["history"]
    assert [row["stage"] for row in history] == [1, 1, 2, 2]
    assert [row["lr"] for row in history][2:] == [0.001, 0.001]


def test_e0_from_isolated_atoms_stays_fixed_least_squares_e0_is_refined():
    from equipot.train.model import learnable_e0

    sources = {"Al": "isolated", "Cu": "least-squares"}
    assert learnable_e0("auto", sources, ["Al", "Cu"]) == ["Cu"]
    assert learnable_e0("auto", {"Al": "given", "Cu": "isolated"}, ["Al", "Cu"]) == []
    assert learnable_e0(True, sources, ["Al", "Cu"]) is True
    config = equipot.ModelConfig(
        elements=["Al", "Cu"],
        r_max=3.0,
        l_max=1,
        channels=8,
        radial_hidden=[16],
        e0={"Al": -1.0, "Cu": -2.0},
    )
    net = TrainingModel(config, seed=0, dtype=torch.float64, learn_e0=["Cu"])
    with torch.no_grad():
        net.e0_delta.copy_(torch.tensor([0.3, -0.2]))  # Al's δ is masked out
    assert net.export().config.e0 == pytest.approx({"Al": -1.0, "Cu": -2.2})
    single = equipot.AtomicGraph.from_atoms(emt_frames(1)[0][:1], 3.0)
    assert float(predict(net, single, forces=False).energy) == pytest.approx(
        0.3 * 0 + (-0.2 if single.atomic_numbers[0] == 29 else 0.0)
    )
    assert "e0_mask" in net.state_dict()  # resumed runs refine the same elements
