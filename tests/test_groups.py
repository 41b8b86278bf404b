"""Errors per group (config type, element, info key) equal a hand computation; group
weighting and group DRO reweight the training loss as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import read, write

import equipot
from equipot.cli.main import main
from equipot.train import load_config, train
from tests.train_utils import emt_frames, tiny_config


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """Training data where the "rare" config type is 2 of 12 frames; a tiny model."""
    tmp = tmp_path_factory.mktemp("groups")
    frames = emt_frames(12, seed=7)
    for k, atoms in enumerate(frames):
        atoms.info["config_type"] = "rare" if k < 2 else "common"
        atoms.info["phase"] = ["a", "b", "c"][k % 3]
    write(tmp / "data.xyz", frames)
    config = tiny_config(tmp / "data.xyz", tmp / "run", optim={"max_epochs": 1})
    result = train(load_config(config), verbose=False)
    return tmp, result.best_model


def test_group_metrics_equal_hand_computation(grouped, capsys):
    tmp, model_path = grouped
    out = tmp / "groups.json"
    args = ["evaluate", str(model_path), str(tmp / "data.xyz"), "--out", str(out)]
    args += ["--group-by", "config_type", "--group-by", "element", "--group-by", "phase"]
    assert main(args) == 0
    assert "worst group" in capsys.readouterr().out
    groups = json.loads(out.read_text())["groups"]
    calc = equipot.EquipotCalculator(model_path)
    rows = []
    for atoms in read(tmp / "data.xyz", ":"):
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = calc
        de = atoms.get_potential_energy() - ref_e
        rows.append((atoms.info, de, atoms.get_forces() - ref_f, atoms.get_chemical_symbols()))
    for key in ("config_type", "phase"):
        for label in {r[0][key] for r in rows}:
            mine = [r for r in rows if r[0][key] == label]
            entry = groups[key][label]
            assert entry["num_frames"] == len(mine)
            assert entry["energy_mae"] == pytest.approx(np.mean([abs(r[1]) for r in mine]))
            f = np.concatenate([r[2].ravel() for r in mine])
            assert entry["forces_mae"] == pytest.approx(np.abs(f).mean())
            assert entry["forces_rmse"] == pytest.approx(np.sqrt(np.mean(f**2)))
        worst = max(
            (k for k in groups[key] if k != "worst"), key=lambda k: groups[key][k]["forces_mae"]
        )
        assert groups[key]["worst"]["group"] == worst
    for element in ("Cu", "Al"):
        f = np.concatenate([r[2][np.array(r[3]) == element].ravel() for r in rows])
        assert groups["element"][element]["forces_mae"] == pytest.approx(np.abs(f).mean())
        with_el = [r for r in rows if element in r[3]]
        per_atom = [abs(r[1]) / len(r[3]) for r in with_el]
        assert groups["element"][element]["energy_per_atom_mae"] == pytest.approx(np.mean(per_atom))


def _trainer(tmp, **loss):
    from equipot.train.prepare import prepare
    from equipot.train.trainer import Trainer

    config = load_config(
        tiny_config(tmp / "data.xyz", tmp / "dro", loss=loss, data={"valid_count": 2})
    )
    return Trainer(config, prepare(config, verbose=False), verbose=False)


def test_inverse_frequency_weights_balance_groups(grouped):
    trainer = _trainer(grouped[0], group_balance="inverse_frequency")
    g = trainer.groups
    names = g.names
    factors = dict(zip(names, g.factors(), strict=True))
    counts = {n: int(c) for n, c in zip(names, g.fraction * len(trainer.train_set), strict=True)}
    # every group carries the same total weight
    totals = {n: factors[n] * counts[n] for n in names if counts[n]}
    assert len(set(np.round(list(totals.values()), 10))) == 1
    assert factors["rare"] > factors["common"]


def test_group_dro_moves_weight_to_the_worst_group(grouped):
    import torch

    from equipot.physics.derivatives import predict
    from equipot.train.distributed import Comm
    from equipot.train.group_balance import frame_losses

    trainer = _trainer(grouped[0], group_balance="dro", dro_step=1.0)
    g = trainer.groups
    q0 = g.q.copy()
    batch = trainer.train_set.batch(
        np.arange(len(trainer.train_set)), torch.float64, trainer.reference
    )
    pred = predict(trainer.model, batch.graph, forces=True)
    losses = frame_losses(pred, batch, trainer.loss).detach().numpy()
    types = g.type_of_frame[batch.frames]
    mean = {n: losses[types == k].mean() for k, n in enumerate(g.names) if (types == k).any()}
    g.observe(pred, batch, trainer.loss, Comm())
    expected = {n: q0[g.names.index(n)] * np.exp(mean[n]) for n in mean}
    total = sum(expected.values())
    for n in mean:
        assert g.q[g.names.index(n)] == pytest.approx(expected[n] / total, rel=1e-9)
    worst = max(mean, key=mean.get)
    assert g.q[g.names.index(worst)] > q0[g.names.index(worst)]
    # the dataset's frame weights are now q_g / p_g
    reweighted = trainer.train_set.batch(np.arange(len(trainer.train_set)))
    k = g.names.index(worst)
    assert reweighted.weight[types == k][0] == pytest.approx(g.q[k] / g.fraction[k])
    # one DRO training epoch runs and its state goes into the checkpoint
    trainer.train(progress_bar=False)
    assert trainer.state_dict()["groups"]["q"].shape == (len(g.names),)
