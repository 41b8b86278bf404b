"""Data parallelism: 2 processes (gloo) give the same training as 1 process — spawned by
``--nproc 2`` or launched by ``torchrun`` (rank 0 prepares, every rank reads the results)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from equipot.cli.main import main
from equipot.train import load_config, train
from equipot.train.trainer import clock_share
from tests.train_utils import tiny_config, write_emt

ROOT = Path(__file__).resolve().parent.parent


def _same_training(a_dir: Path, b_dir: Path) -> None:
    a = torch.load(a_dir / "checkpoint.pt", weights_only=True)
    b = torch.load(b_dir / "checkpoint.pt", weights_only=True)
    assert a["progress"]["step"] == b["progress"]["step"] == 2 * 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-9, atol=1e-12)
    for x, y in zip(a["history"], b["history"], strict=True):
        assert abs(x["valid_loss"] - y["valid_loss"]) <= 1e-9 * abs(x["valid_loss"])
        assert abs(x["train_loss"] - y["train_loss"]) <= 1e-9 * abs(x["train_loss"])
    ra = json.loads((a_dir / "results.json").read_text())
    rb = json.loads((b_dir / "results.json").read_text())
    assert ra["valid"]["num_frames"] == rb["valid"]["num_frames"] == 3
    assert abs(ra["valid"]["forces_mae"] - rb["valid"]["forces_mae"]) <= 1e-9


def test_two_processes_match_one_spawned_and_under_torchrun(tmp_path):
    data = write_emt(tmp_path / "emt.xyz", 11, seed=4)
    # global batch 3 over 8 training frames: shards of 2 and 1 frames, last batch 2
    settings = {"optim": {"max_epochs": 2, "batch_size": 3}, "num_threads": 1}
    threads = torch.get_num_threads()
    try:
        train(load_config(tiny_config(data, tmp_path / "one", **settings)), verbose=False)
    finally:
        torch.set_num_threads(threads)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data, tmp_path / "unused", **settings)))
    assert main(["train", str(config), "--nproc", "2", "--out", str(tmp_path / "two")]) == 0
    _same_training(tmp_path / "one", tmp_path / "two")

    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = (
        [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [*launcher, "--standalone", "--nproc-per-node", "2", "-m", "equipot", "train",
         str(config), "--out", str(tmp_path / "torchrun")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("best model:") == 1  # rank 0 reports, once
    assert out.stdout.count("training plan:") == 1  # prepared and announced once
    _same_training(tmp_path / "one", tmp_path / "torchrun")


def test_summed_clock_is_rank_zero_time():
    """The epoch clock is summed over processes; only rank 0's term may count (each rank used
    to add the shared elapsed time again, doubling the clock — and the budget — every epoch)."""
    elapsed, spent = 12.5, [0.5, 0.7]  # rank 0's and rank 1's time in this epoch
    shares = [clock_share(elapsed, spent[rank], rank == 0) for rank in range(2)]
    assert sum(shares) == elapsed + spent[0]
