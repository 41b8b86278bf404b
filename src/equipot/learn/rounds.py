"""One round's model: training it on the labels so far and measuring it on test frames."""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import torch
from ase.io import read


def train_round(
    run_dir: Path,
    data: Path,
    train_options: dict,
    *,
    previous: Path | None = None,
    members: int = 1,
    valid_fraction: float = 0.1,
    seed: int = 0,
    min_steps: int | None = None,
    verbose: bool = False,
) -> Path:
    """Train round r's model on ``data`` (resuming an interrupted run); returns the model
    or committee file. ``previous`` (the last round's model) is the hook for starting from
    it; today every round trains from scratch on all labels. ``min_steps`` raises the
    epochs so that a round with few labels still takes that many optimizer steps: with a
    fixed epoch count the first rounds would be undertrained, and their models would both
    score worse and select worse."""
    from equipot.train import load_config, train
    from equipot.train.ensemble import train_committee

    del previous  # fine-tuning from the previous round: see the docstring
    raw = copy.deepcopy(train_options)
    raw.setdefault("seed", seed)
    if min_steps is not None:
        optim = raw.setdefault("optim", {})
        epochs = optim.get("max_epochs", 100)
        optim["max_epochs"] = max(epochs, epochs_for_steps(min_steps, data, optim, valid_fraction))
    raw["data"] = {"train": str(data), "valid_fraction": valid_fraction, "split_seed": seed}
    raw["output"] = {"dir": str(run_dir), "progress": False, "plot": True}
    config = load_config(raw)
    if members > 1:
        return train_committee(config, members, verbose=verbose)[0]
    if not (run_dir / "results.json").is_file():
        train(config, resume=(run_dir / "checkpoint.pt").is_file(), verbose=verbose)
    return run_dir / "best.eqp"


def epochs_for_steps(steps: int, data: Path, optim: dict, valid_fraction: float) -> int:
    """Epochs that give at least ``steps`` optimizer steps on ``data``'s training split
    (the validation split rounded up, as the trainer does, so this never falls short)."""
    frames = len(read(data, index=":"))
    train = max(1, frames - math.ceil(valid_fraction * frames))
    per_epoch = math.ceil(train / optim.get("batch_size", 5))
    return math.ceil(steps / per_epoch)


def test_errors(model: Path, test: Path) -> dict:
    """Energy / force MAE of a model or committee (member means) on labelled frames."""
    from equipot.calculator import frozen_copy
    from equipot.uq.calibration import collect
    from equipot.uq.committee import load_models
    from equipot.uq.workflow import open_dataset

    members, _ = load_models(model)
    with tempfile.TemporaryDirectory(prefix="equipot-learn-") as tmp:
        dataset = open_dataset(str(test), members[0], Path(tmp))
        data = collect([frozen_copy(m, torch.float64, "cpu") for m in members], dataset)
        dataset.close()
    return {
        "energy_mae": float(abs(data.energy_error).mean()),
        "energy_per_atom_mae": float(abs(data.energy_error / data.num_atoms).mean()),
        "forces_mae": float(abs(data.force_error).mean()),
        "forces_rmse": float((data.force_error**2).mean() ** 0.5),
    }
