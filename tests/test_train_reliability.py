"""Training that is never silently wrong: missing force keys, the stored training plan,
mid-epoch resume, config diffs on resume, non-finite losses, crafted checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from ase.io import read, write

from equipot.cli.main import main
from equipot.train import load_config, train
from equipot.train.checkpoint import CheckpointError, load_checkpoint
from equipot.train.guard import TrainingDiverged
from equipot.train.plan import TrainingPlan, recent_rate
from equipot.train.trainer import Trainer
from tests.fuzz_corpus import crafted_checkpoint
from tests.train_utils import tiny_config, write_emt


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_emt(tmp_path_factory.mktemp("data") / "emt.xyz", 10, seed=5)


def _mace_style(path, source, key="REF_forces", drop_from=None):
    """The EMT frames with forces under ``key`` (none under "forces")."""
    frames = read(source, ":")
    for k, atoms in enumerate(frames):
        forces, energy = atoms.get_forces(), atoms.get_potential_energy()
        atoms.calc = None
        atoms.info["energy"] = energy
        if drop_from is None or k < drop_from:
            atoms.arrays[key] = forces
    write(path, frames, format="extxyz")
    return path


# ----------------------------------------------------------------------------- item 1
def test_force_loss_without_forces_in_the_file_is_an_error(tmp_path, data):
    path = _mace_style(tmp_path / "mace.xyz", data)
    config = load_config(tiny_config(path, tmp_path / "run", loss={"stress_weight": 0.0}))
    with pytest.raises(ValueError) as info:
        train(config, verbose=False)
    message = str(info.value)
    assert "no forces in" in message and "mace.xyz" in message
    assert "'forces'" in message and "REF_forces" in message  # looked for / what it has
    assert "forces_weight" in message and not (tmp_path / "run" / "checkpoint.pt").exists()
    # with the right key it trains on forces
    config = load_config(
        tiny_config(
            path,
            tmp_path / "run2",
            data={"train": {"path": str(path), "forces_key": "REF_forces"}},
            loss={"stress_weight": 0.0},
            optim={"max_epochs": 1},
        )
    )
    result = train(config, verbose=False)
    assert result.results["valid"]["forces_mae"] > 0
    assert result.results["coverage"]["train"]["forces"] == 7


def test_partial_force_coverage_is_counted_and_reported(tmp_path, data, capsys):
    path = _mace_style(tmp_path / "part.xyz", data, key="forces", drop_from=6)
    config = load_config(
        tiny_config(path, tmp_path / "run", loss={"stress_weight": 0.0}, optim={"max_epochs": 1})
    )
    result = train(config)
    out = capsys.readouterr().out
    coverage = result.results["coverage"]
    assert coverage["train"]["frames"] + coverage["valid"]["frames"] == 10
    assert coverage["train"]["forces"] + coverage["valid"]["forces"] == 6
    assert "frames have forces" in out and "add no forces term" in out


def test_evaluate_says_no_forces_instead_of_nan(tmp_path, data, capsys):
    config = load_config(tiny_config(data, tmp_path / "run", optim={"max_epochs": 1}))
    model = train(config, verbose=False).best_model
    energy_only = _mace_style(tmp_path / "e.xyz", data, key="REF_forces")
    assert main(["evaluate", str(model), str(energy_only), "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed.lower()
    assert f"no forces in {energy_only}" in printed and "REF_forces" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["coverage"] == {"frames": 10, "forces": 0, "stress": 0}
    assert "forces_mae" not in metrics


# ----------------------------------------------------------------------------- item 2
def _cosine(data, out, **optim):
    return tiny_config(
        data,
        out,
        optim={
            "scheduler": "cosine",
            "max_epochs": 3,
            "batch_size": 2,
            "stage_two": {"start_fraction": 0.5, "energy_weight": 50.0, "lr": 0.004},
            **optim,
        },
        output={"checkpoint_steps": 1},
    )


def test_plan_from_a_time_budget_is_whole_epochs_and_extends_deterministically():
    plan = TrainingPlan.create(steps_per_epoch=4, max_epochs=1000, max_time_min=1.0)
    assert not plan.fixed and plan.progress(3) == 0.0
    assert not plan.due_to_fix(5.0, end_of_epoch=False, timed_steps=10)  # < 10 % of 60 s
    assert plan.due_to_fix(6.5, end_of_epoch=False, timed_steps=3)
    plan.fix(seconds_per_step=0.7, steps_done=4)  # 60 / 0.7 = 85.7 → 84 (21 epochs)
    assert plan.total_steps == 84 and plan.total_epochs == 21 and plan.progress(42) == 0.5
    short = TrainingPlan.create(4, 1000, 0.01)
    short.fix(0.2, 2)  # 0.6 s / 0.2 = 3 steps: less than an epoch, kept as steps
    assert short.total_steps == 3
    capped = TrainingPlan.create(4, 5, 10.0)
    capped.fix(0.01, 4)
    assert capped.total_steps == 20  # max_epochs wins
    longer = plan.extended(1000, 2.0, step=84, elapsed=70.0)
    assert longer.total_steps == 168 and longer.seconds_per_step == 0.7
    with pytest.raises(ValueError, match="--extend: the new budget"):
        plan.extended(1000, 1.0, step=84, elapsed=70.0)


def test_time_budget_plan_is_revised_when_the_speed_drifts():
    plan = TrainingPlan.create(steps_per_epoch=4, max_epochs=1000, max_time_min=1.0)
    plan.fix(seconds_per_step=0.5, steps_done=4)  # 120 steps = 30 epochs planned
    assert plan.total_steps == 120
    assert not plan.revise(step=40, elapsed=20.0, seconds_per_step=0.5)  # on time: kept
    assert not plan.revise(step=40, elapsed=20.0, seconds_per_step=0.502)  # within the slack
    # 40 % slower from here: 80 steps × 0.7 s would end at 76 s; 40 s left → 57 → 56 steps
    assert plan.revise(step=40, elapsed=20.0, seconds_per_step=0.7)
    assert plan.total_steps == 96 and plan.seconds_per_step == 0.7 and plan.revisions == 1
    # faster again: the plan grows back (to whole epochs), never past max_epochs
    assert plan.revise(step=60, elapsed=33.0, seconds_per_step=0.25)
    assert plan.total_steps == 168
    capped = TrainingPlan.create(4, 20, 1.0)
    capped.fix(0.75, 4)
    assert capped.total_steps == 80 and not capped.revise(8, 6.0, 0.1)  # max_epochs: 80
    late = TrainingPlan.create(4, 1000, 1.0)
    late.fix(0.5, 4)
    assert late.revise(step=100, elapsed=61.0, seconds_per_step=0.5)  # the budget is spent
    assert late.finished(100) and late.total_steps == 100
    assert not TrainingPlan.create(4, 10, None).revise(8, 1e6, 1.0)  # an epoch budget: never


def test_recent_rate_spans_the_window_not_one_epoch():
    clock = [(10 * k, 1.0 * k) for k in range(1, 31)]  # 0.1 s per step ...
    clock += [(300 + 10 * k, 30.0 + 2.0 * k) for k in range(1, 6)]  # ... then 0.2 s per step
    now = (360, 42.0)
    # the last 10 s: from the epoch end at 32 s (step 310): 10 s / 50 steps
    assert recent_rate(clock, now, since=(1, 0.1), window=10.0) == pytest.approx(0.2)
    # a 20-s window reaches back into the fast epochs: from 22 s (step 220): 20 s / 140 steps
    assert recent_rate(clock, now, since=(1, 0.1), window=20.0) == pytest.approx(20 / 140)
    # a window longer than the run: from the first epoch end after the first timed step
    assert recent_rate(clock, now, since=(1, 0.1), window=1e3) == pytest.approx(41 / 350)
    assert recent_rate([], now, since=(1, 0.1), window=1e3) == pytest.approx(41.9 / 359)


def test_a_slowdown_after_the_first_epoch_does_not_overrun_the_budget(tmp_path, data, monkeypatch):
    """The plan is fixed from the first epoch; every later step is 4× slower (another job took
    the cores). Without revision the run took ≈ 4× its budget; with it, ≈ the budget."""
    import time

    step = Trainer._step
    pause = {"s": 0.0}

    def slow_step(self, positions, start):
        if self.plan.fixed and pause["s"] == 0.0:
            pause["s"] = 3.0 * self.plan.seconds_per_step
        time.sleep(pause["s"])
        return step(self, positions, start)

    monkeypatch.setattr(Trainer, "_step", slow_step)
    budget_min = 0.05
    config = load_config(
        tiny_config(
            data, tmp_path / "run", optim={"max_epochs": 100000, "max_time_min": budget_min}
        )
    )
    result = train(config, verbose=False)
    plan = result.results["plan"]
    history = load_checkpoint(result.run_dir / "checkpoint.pt")["history"]
    elapsed = history[-1]["time_s"]
    epoch_s = elapsed / len(history)
    assert elapsed <= 60 * budget_min * 1.05 + 2 * epoch_s, (elapsed, len(history), plan)
    assert plan["revisions"] >= 1 and result.results["steps"] == plan["total_steps"]


def test_time_budget_fixes_a_step_plan_that_resume_keeps(tmp_path, data):
    config = load_config(_cosine(data, tmp_path / "run", max_epochs=1000, max_time_min=0.03))
    result = train(config, verbose=False)
    plan = result.results["plan"]
    assert plan["seconds_per_step"] > 0 and result.results["steps"] == plan["total_steps"]
    # the README's old "--resume --set optim.max_time_min=..." would silently re-plan
    minutes = plan["seconds_per_step"] * (plan["total_steps"] + 8) / 60
    longer = load_config(_cosine(data, tmp_path / "run", max_epochs=1000, max_time_min=minutes))
    with pytest.raises(ValueError, match=r"budget changed.*max_time_min: 0\.03 → .*--extend"):
        train(longer, resume=True, verbose=False)
    with pytest.raises(ValueError, match="finished its plan"):
        train(config, resume=True, verbose=False)
    extended = train(longer, extend=True, verbose=False)
    new_plan = extended.results["plan"]
    assert new_plan["total_steps"] >= plan["total_steps"] + 4
    # extending is computed from the stored rate; only a later revision (the extended run's
    # own speed drifting) may replace it
    assert new_plan["revisions"] or new_plan["seconds_per_step"] == plan["seconds_per_step"]
    assert extended.results["steps"] == new_plan["total_steps"]


def test_resume_from_the_middle_of_an_epoch_is_exact(tmp_path, data, monkeypatch):
    """Checkpoints inside epochs; interrupted at step 5 of 12 (epoch 2, batch 1)."""
    full = load_config(_cosine(data, tmp_path / "full"))
    train(full, verbose=False)
    part = load_config(_cosine(data, tmp_path / "part"))
    original = Trainer.save_checkpoint
    calls = {"n": 0}

    def stop_after_step_5(self):
        original(self)
        if self.state.step == 5 and self.state.batch:
            calls["n"] += 1
            raise KeyboardInterrupt  # as a kill right after that checkpoint

    monkeypatch.setattr(Trainer, "save_checkpoint", stop_after_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(part, verbose=False)
    monkeypatch.setattr(Trainer, "save_checkpoint", original)
    saved = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert calls["n"] == 1 and saved["progress"]["step"] == 5 and saved["progress"]["batch"] == 1
    train(part, resume=True, verbose=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert b["progress"]["step"] == a["progress"]["step"] == 12
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"], strict=True):
        assert torch.equal(x, y)
    assert [r["stage"] for r in b["history"]] == [1, 1, 2]
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["train_loss"] == y["train_loss"] and x["valid_loss"] == y["valid_loss"]


def test_resume_refuses_other_data_model_or_loss_and_lists_them(tmp_path, data):
    config = tiny_config(data, tmp_path / "run", optim={"max_epochs": 1})
    train(load_config(config), verbose=False)
    changed = yaml.safe_load(yaml.safe_dump(config))
    changed["model"]["channels"] = 16
    changed["loss"]["forces_weight"] = 1.0
    changed["output"]["plot"] = True  # allowed: how the run is watched
    with pytest.raises(ValueError) as info:
        train(load_config(changed), resume=True, verbose=False)
    message = str(info.value)
    assert "model.channels: 8 → 16" in message and "loss.forces_weight: 10.0 → 1.0" in message
    assert "output.plot" not in message and "--allow-config-change" in message
    other = write_emt(tmp_path / "other.xyz", 10, seed=6)  # same path, new content
    data.rename(tmp_path / "saved.xyz")
    other.rename(data)
    try:
        with pytest.raises(ValueError, match=r"data\.train \(file content, SHA-256\)"):
            train(load_config(config), resume=True, verbose=False)
    finally:
        data.unlink()
        (tmp_path / "saved.xyz").rename(data)


def test_checkpoint_writes_are_atomic_and_fsynced(tmp_path, monkeypatch):
    import os

    from equipot.persist import atomic_write

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old complete file")

    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and len(synced) >= 2  # the file and its directory

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"never")
    monkeypatch.undo()
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


# ----------------------------------------------------------------------------- item 3
def test_diverging_training_stops_with_epoch_batch_and_frames(tmp_path, data):
    config = load_config(tiny_config(data, tmp_path / "run", optim={"lr": 1e30, "grad_clip": None}))
    with pytest.raises(TrainingDiverged) as info:
        train(config, verbose=False)
    message = str(info.value)
    assert "non-finite" in message and "epoch 1, batch" in message and "frames " in message
    assert "emt.xyz" in message and "4 times in a row" in message
    assert "no checkpoint was written" in message
    for name in ("checkpoint.pt", "best.eqp", "final.eqp"):  # nothing non-finite was saved
        assert not (tmp_path / "run" / name).exists()


def test_one_bad_batch_is_skipped_rolled_back_and_lr_lowered(tmp_path, data, monkeypatch):
    original = Trainer.loss_and_gradients
    seen = {"n": 0}

    def nan_once_at_step_5(self, positions, norm):
        loss = original(self, positions, norm)
        seen["n"] += 1
        if seen["n"] == 6:  # epoch 2, batch 2 (4 batches per epoch)
            for p in self.model.parameters():
                p.grad.fill_(math.nan)
        return loss

    monkeypatch.setattr(Trainer, "loss_and_gradients", nan_once_at_step_5)
    config = load_config(
        tiny_config(data, tmp_path / "run", optim={"max_epochs": 3, "batch_size": 2})
    )
    result = train(config, verbose=False)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert result.results["steps"] == 12 and saved["progress"]["epoch"] == 3
    assert seen["n"] == 12 + 2  # epoch 2 replayed from its start: batches 1 and 2 again
    assert saved["schedule"]["scale"] == 0.5 and saved["progress"]["failures"] == 0
    assert all(bool(torch.isfinite(v).all()) for v in saved["model"].values())
    assert np.isfinite([row["train_loss"] for row in saved["history"]]).all()


# ----------------------------------------------------------------------------- item 5
def test_crafted_checkpoint_is_refused_by_resume(tmp_path, data, capsys):
    config = tmp_path / "config.yaml"
    run = tmp_path / "run"
    config.write_text(yaml.safe_dump(tiny_config(data, run)))
    run.mkdir()
    marker = tmp_path / "code-ran"
    crafted_checkpoint(run / "checkpoint.pt", marker)
    assert main(["train", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "not a readable equipot checkpoint" in err and "weights-only" in err
    assert "Traceback" not in err and not marker.exists()


def test_old_torch_is_refused_before_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    torch.save({"format": "equipot-checkpoint"}, path)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(CheckpointError, match=r"torch 2\.5\.1.*CVE-2025-32434.*>= 2\.10"):
        load_checkpoint(path)
