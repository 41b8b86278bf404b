"""``train(config)``: prepare data, run the loop in one or several processes, evaluate.

Run directory (``output.dir``)::

    config.yaml          the resolved configuration
    data.json            split (frame indices) and statistics
    log.csv              one row per epoch;  learning_curve.png
    checkpoint.pt        latest state (resume with ``resume=True`` / ``--resume``)
    best.eqp             lowest validation loss (EMA weights if EMA is on)
    final.eqp            weights at the end
    results.json         best epoch, validation and test errors
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from equipot.model.config import ModelConfig
from equipot.model.io import load_model
from equipot.runtime import tune_allocator
from equipot.train import finetune
from equipot.train.checkpoint import load_checkpoint
from equipot.train.config import TrainConfig
from equipot.train.distributed import Comm, env_comm, launch
from equipot.train.evaluate import evaluate_dataset
from equipot.train.prepare import Prepared, prepare
from equipot.train.trainer import Trainer


@dataclass
class TrainResult:
    run_dir: Path
    best_model: Path
    final_model: Path
    results: dict  # contents of results.json


def train(
    config: TrainConfig, *, resume: bool = False, nproc: int = 1, verbose: bool = True
) -> TrainResult:
    """Train a model as ``config`` says; ``nproc`` > 1 spawns data-parallel processes."""
    if config.finetune is not None:
        config = finetune.resolve_config(config)
    run_dir = config.output.dir
    checkpoint = run_dir / "checkpoint.pt"
    model_config = None
    if resume:
        model_config = ModelConfig.model_validate_json(load_checkpoint(checkpoint)["model_config"])
    elif checkpoint.exists():
        raise ValueError(
            f"{run_dir} already holds a training run (checkpoint.pt): pass --resume to continue "
            "it, or choose another output.dir"
        )
    prepared = prepare(config, model_config=model_config, verbose=verbose)
    if config.finetune is not None:
        prepared = finetune.attach(config, prepared, resumed=resume, verbose=verbose)
    comm = env_comm()
    if nproc > 1 and comm is None:
        launch(_worker, nproc, config, prepared, resume, verbose)
    else:
        _worker(comm or Comm(), config, prepared, resume, verbose)
    results = json.loads((run_dir / "results.json").read_text())
    return TrainResult(run_dir, run_dir / "best.eqp", run_dir / "final.eqp", results)


def _worker(
    comm: Comm, config: TrainConfig, prepared: Prepared, resume: bool, verbose: bool = True
) -> None:
    tune_allocator()
    threads = config.num_threads
    if threads is None and comm.world_size > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // comm.world_size)
    if threads is not None:
        torch.set_num_threads(threads)
    trainer = Trainer(config, prepared, comm, verbose=verbose)
    if resume:
        trainer.load_state_dict(load_checkpoint(prepared.run_dir / "checkpoint.pt"))
    state = trainer.train(progress_bar=config.output.progress)
    trainer.plot()
    if comm.is_main:
        trainer.save_model(trainer.averaged_model(), prepared.run_dir / "final.eqp")
    comm.barrier()
    results = {
        "epochs": state.epoch,
        "steps": state.step,
        "elapsed_s": state.elapsed,
        "best_epoch": state.best_epoch + 1,
        "best_valid_loss": state.best_loss,
        "valid": _errors(prepared.run_dir / "best.eqp", trainer, trainer.valid_set, comm),
    }
    if prepared.test is not None:
        test_set = prepared.test.open(config.data.in_memory)
        results["test"] = _errors(prepared.run_dir / "best.eqp", trainer, test_set, comm)
    if comm.is_main:
        (prepared.run_dir / "results.json").write_text(json.dumps(results, indent=1))


def _errors(model_path: Path, trainer: Trainer, dataset, comm: Comm) -> dict:
    """Errors of a saved model (E0 included, evaluated in float64) on ``dataset``."""
    model = load_model(model_path, dtype=torch.float64)
    acc = evaluate_dataset(
        model, dataset, batch_size=trainer.config.optim.valid_batch_size, comm=comm
    )
    return acc.results()
