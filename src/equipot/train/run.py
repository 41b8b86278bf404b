"""``train(config)``: prepare data, run the loop in one or several processes, evaluate.

Run directory (``output.dir``)::

    config.yaml          the resolved configuration
    data.json            split (frame indices) and statistics
    log.csv              one row per epoch;  learning_curve.png
    checkpoint.pt        latest state, also inside epochs (resume with ``--resume``, exactly)
    best.eqp             lowest validation loss (EMA weights if EMA is on)
    final.eqp            weights at the end
    results.json         best epoch, validation and test errors
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from equipot.model.config import ModelConfig
from equipot.model.io import load_model
from equipot.persist import atomic_write, remove_stale_temporaries
from equipot.progress import write as print_line
from equipot.runtime import tune_allocator
from equipot.train import finetune
from equipot.train.checkpoint import load_checkpoint
from equipot.train.config import TrainConfig
from equipot.train.distributed import Comm, env_comm, launch
from equipot.train.evaluate import evaluate_dataset
from equipot.train.plan import TrainingPlan
from equipot.train.prepare import Prepared, prepare, prepared_model_config
from equipot.train.resume import check_resume
from equipot.train.trainer import Trainer


@dataclass
class TrainResult:
    run_dir: Path
    best_model: Path
    final_model: Path
    results: dict  # contents of results.json


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    extend: bool = False,
    allow_config_change: bool = False,
    nproc: int = 1,
    verbose: bool = True,
) -> TrainResult:
    """Train a model as ``config`` says; ``nproc`` > 1 spawns data-parallel processes.

    ``resume``: continue the run in ``output.dir`` from its checkpoint, exactly (a run without
    a checkpoint yet starts afresh); the config must be the run's (see
    :mod:`equipot.train.resume`). ``extend``: resume with a larger budget (a new, longer
    plan). Under ``torchrun`` rank 0 prepares the data while the others wait.
    """
    resume = resume or extend
    if config.finetune is not None:
        config = finetune.resolve_config(config)
    run_dir = config.output.dir
    checkpoint = run_dir / "checkpoint.pt"
    comm = env_comm()
    main = comm is None or comm.is_main
    state = None
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint)
    elif resume:
        if main and verbose:
            print_line(f"no checkpoint in {run_dir} yet: starting the run from the beginning")
    elif checkpoint.exists():
        raise ValueError(
            f"{run_dir} already holds a training run (checkpoint.pt): pass --resume to continue "
            "it, --extend to train it further, or choose another output.dir"
        )
    model_config = None if state is None else ModelConfig.model_validate_json(state["model_config"])
    resumed = state is not None
    if main:
        remove_stale_temporaries(checkpoint)
        prepared = prepare(config, model_config=model_config, verbose=verbose)
        if config.finetune is not None:
            prepared = finetune.attach(config, prepared, resumed=resumed, verbose=verbose)
    if comm is not None:
        comm.barrier()  # rank 0 has built the caches and written data.json
    if not main:
        known = model_config or prepared_model_config(run_dir)
        prepared = prepare(config, model_config=known, verbose=False, write=False)
        if config.finetune is not None:
            prepared = finetune.attach(config, prepared, resumed=resumed, verbose=False)
    plan = (
        None
        if state is None
        else _resumed_plan(state, config, prepared, extend, allow_config_change, verbose and main)
    )
    if nproc > 1 and comm is None:
        launch(_worker, nproc, config, prepared, plan, verbose)
    else:
        _worker(comm or Comm(), config, prepared, plan, verbose)
    results = json.loads((run_dir / "results.json").read_text())
    return TrainResult(run_dir, run_dir / "best.eqp", run_dir / "final.eqp", results)


def _resumed_plan(
    state: dict,
    config: TrainConfig,
    prepared: Prepared,
    extend: bool,
    allow_config_change: bool,
    verbose: bool,
) -> TrainingPlan:
    """The checkpoint's plan (longer with ``extend``), after checking the new config."""
    config_json = config.model_dump(mode="json")
    for line in check_resume(
        state, config_json, prepared.data_hashes, extend=extend, allow_changes=allow_config_change
    ):
        if verbose:
            print_line(line)
    plan = TrainingPlan.from_state(state["plan"])
    step, elapsed = int(state["progress"]["step"]), float(state["progress"]["elapsed"])
    if extend:
        o = config.optim
        plan = plan.extended(o.max_epochs, o.max_time_min, step, elapsed)
    elif plan.finished(step) and (prepared.run_dir / "results.json").exists():
        raise ValueError(
            f"the run in {prepared.run_dir} has finished its plan ({plan.describe()}); to train "
            "it further pass --extend with a larger optim.max_epochs or optim.max_time_min"
        )
    return plan


def _worker(
    comm: Comm,
    config: TrainConfig,
    prepared: Prepared,
    plan: TrainingPlan | None,
    verbose: bool = True,
) -> None:
    tune_allocator()
    threads = config.num_threads
    if threads is None and comm.world_size > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // comm.world_size)
    if threads is not None:
        torch.set_num_threads(threads)
    trainer = Trainer(config, prepared, comm, verbose=verbose)
    if plan is not None:
        trainer.load_state_dict(load_checkpoint(prepared.run_dir / "checkpoint.pt"), plan)
    state = trainer.train(progress_bar=config.output.progress)
    trainer.plot()
    uq_report = None
    if comm.is_main:
        trainer.save_model(trainer.averaged_model(), prepared.run_dir / "final.eqp")
        if config.model.feature_ceiling == "data":
            for name in ("best.eqp", "final.eqp"):
                _attach_ceiling(prepared.run_dir / name, trainer.train_set)
        if config.uncertainty.fit and prepared.model_config.saturation is not None:
            uq_report = {"skipped": "model.saturation: the last-layer fit needs an affine readout"}
            print(f"uncertainty fit skipped: {uq_report['skipped']}")
        elif config.uncertainty.fit:
            if verbose:  # ≈ 10 s per model for a small molecule: say what the wait is
                print_line(
                    "uncertainty: last-layer and latent-distance fit of best.eqp and final.eqp "
                    f"({len(trainer.train_set)} training frames, forces of "
                    f"{min(config.uncertainty.force_frames, len(trainer.train_set))}), "
                    f"calibration on the {len(trainer.valid_set)} validation frames"
                )
            started = time.perf_counter()
            uq_report = _fit_uncertainty(trainer, config)
            if verbose:
                print_line(f"uncertainty: fitted in {time.perf_counter() - started:.0f} s")
    comm.barrier()
    results = {
        "epochs": state.epoch,
        "steps": state.step,
        "elapsed_s": state.elapsed,
        "best_epoch": state.best_epoch + 1,
        "best_valid_loss": state.best_loss,
        "plan": trainer.plan.state_dict(),
        "coverage": prepared.coverage,
        "valid": _errors(prepared.run_dir / "best.eqp", trainer, trainer.valid_set, comm),
    }
    if prepared.test is not None:
        test_set = prepared.test.open(config.data.in_memory)
        results["test"] = _errors(prepared.run_dir / "best.eqp", trainer, test_set, comm)
    if uq_report is not None:
        results["uncertainty"] = uq_report
    if comm.is_main:
        atomic_write(prepared.run_dir / "results.json", json.dumps(results, indent=1))
    comm.barrier()  # every rank reads results.json after this


def _attach_ceiling(model_path: Path, train) -> None:
    """Measure the feature ceiling of a saved model on the training split and save it in the
    file (other heads and the metadata kept)."""
    from equipot.model.io import read_model_metadata
    from equipot.nn.feature_ceiling import fit_feature_ceiling, set_feature_ceiling
    from equipot.transfer.heads import stored_heads

    extra = json.loads(read_model_metadata(model_path).get("extra", "{}"))
    head_name, heads = stored_heads(model_path)
    model = load_model(model_path)
    dtype = model.dtype
    measured = model.double()
    set_feature_ceiling(measured, fit_feature_ceiling(measured, train))
    measured.to(dtype).save(model_path, extra=extra, heads=heads, head_name=head_name)


def _fit_uncertainty(trainer: Trainer, config: TrainConfig) -> dict:
    """Uncertainty fit (training split) and calibration (validation split) of both models."""
    from equipot.uq.workflow import attach_after_training

    loss = config.loss
    options = {
        "energy_weight": loss.energy_weight,
        "forces_weight": loss.forces_weight,
        "element_weights": loss.element_weights,
    }
    run_dir = trainer.prepared.run_dir
    return {
        name: attach_after_training(
            run_dir / name, trainer.train_set, trainer.valid_set, options, config.uncertainty
        )
        for name in ("best.eqp", "final.eqp")
    }


def _errors(model_path: Path, trainer: Trainer, dataset, comm: Comm) -> dict:
    """Errors of a saved model (E0 included, evaluated in float64) on ``dataset``."""
    model = load_model(model_path, dtype=torch.float64)
    acc = evaluate_dataset(
        model, dataset, batch_size=trainer.config.optim.valid_batch_size, comm=comm
    )
    return acc.results()
