"""Data parallelism: 2 processes (gloo) give the same training as 1 process."""

from __future__ import annotations

import torch

from equipot.train import load_config, train
from tests.train_utils import tiny_config, write_emt


def test_two_processes_match_one(tmp_path):
    data = write_emt(tmp_path / "emt.xyz", 11, seed=4)
    # global batch 3 over 8 training frames: shards of 2 and 1 frames, last batch 2
    settings = {"optim": {"max_epochs": 2, "batch_size": 3}, "num_threads": 1}
    single = load_config(tiny_config(data, tmp_path / "one", **settings))
    double = load_config(tiny_config(data, tmp_path / "two", **settings))
    train(single, verbose=False)
    result = train(double, nproc=2, verbose=False)
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert a["progress"]["step"] == b["progress"]["step"] == 2 * 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-9, atol=1e-12)
    for x, y in zip(a["history"], b["history"], strict=True):
        assert abs(x["valid_loss"] - y["valid_loss"]) <= 1e-9 * abs(x["valid_loss"])
        assert abs(x["train_loss"] - y["train_loss"]) <= 1e-9 * abs(x["train_loss"])
    assert result.results["valid"]["num_frames"] == 3
