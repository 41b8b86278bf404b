"""``equipot learn``: a loop killed with SIGKILL while labelling resumes without repeating a
reference calculation; selection and labelling helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from ase.build import bulk
from ase.io import read, write

from equipot.learn.labelling import LABEL_ID, append_frame, read_labelled
from equipot.learn.select import farthest_points, select
from tests.train_utils import emt_frames

ROOT = Path(__file__).resolve().parents[1]


HOLDS = [2, 7]  # kills inside the initial labelling (6 frames) and round 1 (4 more): each
# leaves ≥ workers + 1 frames to label, so both workers end up held


def _config(tmp: Path) -> Path:
    start = bulk("Cu", "fcc", a=3.6, cubic=True)
    write(tmp / "start.xyz", [start, start * (1, 1, 2)])
    write(tmp / "test.xyz", emt_frames(6, seed=4, elements=("Cu",)))
    config = {
        "reference": {
            "calculator": "tests.learn_helpers:CountingEMT",
            "options": {"counter": str(tmp / "calls.txt"), "delay": 0.05, "hold": HOLDS},
        },
        "initial": {"structures": "start.xyz", "count": 6, "rattle": 0.08},
        "train": {
            "model": {
                "r_max": 3.0,
                "l_max": 1,
                "channels": 8,
                "radial_hidden": [16],
                "correlation": 2,
            },
            "loss": {"energy_weight": 1.0, "forces_weight": 10.0},
            "optim": {"max_epochs": 3, "batch_size": 3},
            "uncertainty": {"force_frames": 4},
        },
        "explore": {
            "replicas": [{"temperature": 600, "steps": 60}],
            "timestep": 2.0,
            "snapshot_every": 15,
        },
        "select": {"per_round": 4},
        "stop": {"max_rounds": 2, "max_labels": 50, "test": "test.xyz"},
        "workers": 2,
        "out": "learn",
    }
    path = tmp / "learn.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _learn(config: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen(
        [sys.executable, "-m", "equipot.cli.main", "learn", str(config), "--no-progress"],
        cwd=config.parent,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_when(config: Path, ready) -> None:
    """Run the loop until ``ready()``, then SIGKILL it and its labelling workers."""
    proc = _learn(config)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_learn_resumes_without_repeating_reference_calls(tmp_path):
    """Kill campaign: SIGKILL inside the initial labelling, during round 1's training, during
    its exploration and inside its labelling; every rerun continues, and in the end every
    reference calculation was done exactly once and every labelled frame is kept."""
    config = _config(tmp_path)
    out = tmp_path / "learn"

    def held(j):  # both workers wait inside a calculation (one may have started just before
        # the threshold and finished one more: the count can be one above it)
        return lambda: len(list(tmp_path.glob(f"calls.txt.hold-{j}-*"))) == 2

    def release(j):
        (tmp_path / f"calls.txt.release-{j}").touch()

    def saved_equals_computed(at_least):  # nothing computed was lost by the kill
        calls = (tmp_path / "calls.txt").read_text().splitlines()
        assert len(read_labelled(out / "labelled.extxyz")) == len(calls) >= at_least

    _kill_when(config, held(0))
    release(0)
    saved_equals_computed(HOLDS[0])
    _kill_when(config, lambda: (out / "round-1" / "train" / "log.csv").is_file())
    assert len(read_labelled(out / "labelled.extxyz")) == 6
    _kill_when(config, lambda: (out / "round-1" / "explore" / "replica-0.csv").is_file())
    assert not (out / "round-1" / "candidates.extxyz").exists()
    _kill_when(config, held(1))
    release(1)
    saved_equals_computed(HOLDS[1])

    resumed = _learn(config)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output

    calls = (tmp_path / "calls.txt").read_text().split()[::2]
    frames = read_labelled(out / "labelled.extxyz")
    assert len(calls) == len(set(calls)), "a reference calculation was repeated"
    assert len(frames) == len(calls) == 6 + 4
    ids = [a.info[LABEL_ID] for a in frames]
    assert len(set(ids)) == len(ids)
    curve = (out / "learning_curve.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in curve[1:]] == [["1", "6"], ["2", "10"]]
    assert (out / "learning_curve.png").is_file()
    assert frames[-1].get_forces().shape == (len(frames[-1]), 3)


def test_truncated_last_frame_is_dropped(tmp_path):
    path = tmp_path / "l.extxyz"
    for k, atoms in enumerate(emt_frames(3, seed=1)):
        atoms.info[LABEL_ID] = f"x{k}"
        append_frame(path, atoms)
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # killed in the middle of the third frame
    frames = read_labelled(path)
    assert [a.info[LABEL_ID] for a in frames] == ["x0", "x1"]
    assert len(read(path, index=":")) == 2  # the file itself was repaired


def test_selection_prefers_uncertain_and_diverse_frames():
    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(40, 3))
    descriptors[:10] = descriptors[0] + 1e-3 * rng.normal(size=(10, 3))  # ten near-copies
    scores = np.linspace(1.0, 0.0, 40)  # the copies score highest
    plain = select(scores, descriptors, 4, diversity=False)
    assert plain == [0, 1, 2, 3]
    diverse = select(scores, descriptors, 4, pool_factor=4.0)
    assert sum(k < 10 for k in diverse) == 1  # one of the copies, then spread out
    assert all(k < 16 for k in diverse)  # from the uncertain pool only
    # weighted: score × distance over all candidates; a far, half as uncertain frame beats a
    # second copy of the most uncertain one, and a near-zero score is never worth a label
    weighted_scores = scores.copy()
    weighted_scores[39] = 0.5
    descriptors_w = descriptors.copy()
    descriptors_w[39] = descriptors[0] + 50.0
    weighted = select(weighted_scores, descriptors_w, 3, strategy="weighted")
    assert 0 in weighted and 39 in weighted  # the most uncertain, then the far one
    assert sum(k < 10 for k in weighted) == 1
    w = np.zeros(40)
    w[[0, 20]] = 1.0
    assert sorted(farthest_points(descriptors, 2, None, 0, weights=w)) == [0, 20]
    far = farthest_points(descriptors, 3, descriptors[:1], first=0)
    assert 0 not in far
    assert len(select(scores, descriptors, 5, method="random", seed=1)) == 5


def test_pool_rounds_grow_and_few_labels_still_train_min_steps(tmp_path):
    """``select.growth`` 2 doubles the labels added each round (4 → 6 → 10 → 18 labels) and
    ``min_steps`` raises the epochs of the small rounds to that many optimizer steps."""
    from equipot.learn.config import LearnConfig
    from equipot.learn.loop import LearnLoop
    from equipot.learn.rounds import epochs_for_steps

    pool = emt_frames(30, seed=5, elements=("Cu",))
    for atoms in pool:
        atoms.calc = None
    write(tmp_path / "pool.xyz", pool)
    write(tmp_path / "test.xyz", emt_frames(4, seed=6, elements=("Cu",)))
    initial = emt_frames(4, seed=7, elements=("Cu",))
    write(tmp_path / "initial.xyz", initial)
    write(tmp_path / "start.xyz", initial[:1])
    config = LearnConfig.model_validate(
        {
            "reference": {"calculator": "emt"},
            "initial": {"structures": tmp_path / "start.xyz", "labelled": tmp_path / "initial.xyz"},
            "train": {
                "model": {"r_max": 3.0, "l_max": 1, "channels": 4, "radial_hidden": [8]},
                "optim": {"max_epochs": 1, "batch_size": 2},
                "uncertainty": {"force_frames": 2},
            },
            "explore": {"pool": tmp_path / "pool.xyz"},
            "select": {"per_round": 2, "growth": 2.0},
            "stop": {"max_rounds": 4, "max_labels": 100, "test": tmp_path / "test.xyz"},
            "min_steps": 6,
            "valid_fraction": 0.25,
            "workers": 1,
            "out": tmp_path / "learn",
        }
    )
    LearnLoop(config, progress=False, verbose=False).run()
    curve = (tmp_path / "learn" / "learning_curve.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[1]) for line in curve] == [4, 6, 10, 18]
    for r, labels in enumerate([4, 6, 10, 18], start=1):
        run = tmp_path / "learn" / f"round-{r}" / "train"
        epochs = yaml.safe_load((run / "config.yaml").read_text())["optim"]["max_epochs"]
        train = labels - max(1, round(0.25 * labels))  # the trainer's split
        assert epochs * -(-train // 2) >= 6  # at least min_steps steps
        data = tmp_path / "learn" / f"round-{r}" / "train.extxyz"
        assert epochs == max(1, epochs_for_steps(6, data, {"batch_size": 2}, 0.25))
    assert epochs_for_steps(6, tmp_path / "pool.xyz", {"batch_size": 2}, 0.1) == 1  # 30 frames
    ids = [a.info[LABEL_ID] for a in read(tmp_path / "learn" / "round-4" / "train.extxyz", ":")]
    assert ids == sorted(ids)  # the split does not depend on the labelling processes' order
    # selection scores of round 4's model (4 validation frames: its force ball is infinite)
    # stay finite and rank the frames; a single model ranks by latent distance
    from equipot.learn.select import score_frames
    from equipot.model.io import load_model

    model = tmp_path / "learn" / "round-4" / "train" / "best.eqp"
    assert load_model(model).uncertainty.ball.quantile == float("inf")
    for requested, used in [("auto", "latent"), ("force_radius", "force_radius")]:
        scores, descriptors, name = score_frames(model, pool[:8], requested)
        assert name == used
        assert np.isfinite(scores).all() and np.ptp(scores) > 0
        assert descriptors.shape[0] == 8
