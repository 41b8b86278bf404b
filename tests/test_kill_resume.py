"""Kill campaign: ``equipot train`` (cosine schedule, stage two, EMA) SIGKILLed at random
moments — one of them inside a checkpoint write — and resumed each time ends with the same
weights as an uninterrupted run of the same plan, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from equipot.train import load_config, train
from equipot.train.checkpoint import load_checkpoint
from tests.train_utils import tiny_config, write_emt

ROOT = Path(__file__).resolve().parent.parent
KILLS = 6
PLAN_STEPS = 24  # 6 epochs × 4 steps (the plan of _config)


def _config(data: Path, out: Path) -> dict:
    return tiny_config(
        data,
        out,
        num_threads=1,
        optim={
            "scheduler": "cosine",
            "max_epochs": 6,
            "batch_size": 2,
            "ema_decay": 0.9,
            "stage_two": {"start_fraction": 0.5, "energy_weight": 30.0, "lr": 0.005},
        },
        output={"checkpoint_steps": 1},
    )


def _start(config: Path, resume: bool, env: dict) -> subprocess.Popen:
    argv = [sys.executable, "-m", "equipot", "train", str(config)]
    return subprocess.Popen(
        [*argv, "--resume"] if resume else argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_training(proc: subprocess.Popen, timeout: float = 240) -> bool:
    """Read output until the trainer announces its plan; False if the process ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            return False
        if line.startswith("training plan"):
            return True
    raise AssertionError("no training plan line")


def _wait_for_step(
    checkpoint: Path, step: int, proc: subprocess.Popen, timeout=240
) -> float | None:
    """Until the run's checkpoint (one per step) has reached ``step`` (or the run ended);
    returns the seconds between the last two steps seen, the run's own pace (None if unseen)."""
    deadline = time.monotonic() + timeout
    seen, pace = None, None
    while time.monotonic() < deadline and proc.poll() is None:
        current = load_checkpoint(checkpoint)["progress"]["step"] if checkpoint.exists() else None
        if current is not None and current != (seen[0] if seen else None):
            now = time.monotonic()
            if seen is not None:
                pace = (now - seen[1]) / (current - seen[0])
            seen = (current, now)
        if current is not None and current >= step:
            return pace
        time.sleep(0.02)
    return pace


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    data = write_emt(tmp_path / "emt.xyz", 10, seed=3)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    try:  # the uninterrupted run, in this process (num_threads 1 like the killed ones)
        train(load_config(_config(data, tmp_path / "reference")), verbose=False)
    finally:
        torch.set_num_threads(threads)
    reference_s = time.perf_counter() - started
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(data, tmp_path / "killed")))
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EQUIPOT_TEST")}
    env.update(PYTHONPATH=str(ROOT / "src"), EQUIPOT_PROGRESS="lines")
    rng = np.random.default_rng(7)
    per_step = reference_s / PLAN_STEPS
    kills, in_write, steps, done = 0, False, [], 0
    while kills < KILLS:
        hold = tmp_path / f"holding-{kills}"
        run_env = dict(env)
        if kills == 3:  # this time: inside the write of a checkpoint, half of it on disk
            run_env.update(EQUIPOT_TEST_HOLD_WRITE=str(hold), EQUIPOT_TEST_HOLD_SECONDS="120")
        proc = _start(config, resume=checkpoint.exists(), env=run_env)
        try:
            if not _wait_for_training(proc):
                break  # finished before we could kill it
            if kills == 3:
                deadline = time.monotonic() + 240
                while not hold.exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                in_write = hold.exists()
            else:  # a few steps on (so every kill loses something), then a random moment
                # within the step; the cap keeps two steps per kill still to come, so a run
                # slowed or sped up by a loaded machine never finishes before its kill
                headroom = PLAN_STEPS - 2 * (KILLS - kills)
                target = min(done + int(rng.integers(2, 4)), headroom)
                pace = _wait_for_step(checkpoint, target, proc)
                time.sleep(rng.uniform(0.0, 0.5) * min(per_step, pace or per_step))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        kills += 1
        if kills == 4 and in_write:  # half a checkpoint in the temporary, the old one intact
            assert list(checkpoint.parent.glob("checkpoint.pt.*.tmp"))
        if checkpoint.exists():
            done = load_checkpoint(checkpoint)["progress"]["step"]  # always readable
            steps.append(done)
    assert in_write, "the kill inside a checkpoint write did not happen"
    final = _start(config, resume=True, env=env)
    output, _ = final.communicate(timeout=600)
    assert final.returncode == 0, output[-3000:]
    assert not list(checkpoint.parent.glob("checkpoint.pt.*.tmp"))  # cleaned up
    a = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)
    b = torch.load(checkpoint, weights_only=True)
    assert kills >= 5 and len(set(steps)) >= 3, (kills, steps)  # killed at different steps
    assert a["progress"]["step"] == b["progress"]["step"] == PLAN_STEPS
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"], strict=True):
        assert torch.equal(x, y)
    assert [r["stage"] for r in b["history"]] == [1, 1, 1, 2, 2, 2]
    assert [r["valid_loss"] for r in a["history"]] == [r["valid_loss"] for r in b["history"]]
