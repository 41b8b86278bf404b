"""The trainer's state: what checkpoints and in-memory snapshots hold, and the epoch's row.

A checkpoint stores the global error sums of the unfinished epoch (every process contributes
its share once, rank 0 keeps the sum); an in-memory snapshot stores each process's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from equipot.train import checkpoint as ckpt
from equipot.train.metrics import ErrorAccumulator
from equipot.train.plan import TrainingPlan

if TYPE_CHECKING:
    from equipot.train.trainer import Trainer


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    batch: int = 0  # batches done in the current, unfinished epoch
    elapsed: float = 0.0  # seconds of training so far (across resumes)
    best_loss: float = math.inf
    best_epoch: int = -1
    stage: int = 1
    failures: int = 0  # consecutive non-finite batches (reset by a clean epoch)
    history: list = field(default_factory=list)


@dataclass
class EpochSums:
    """Running sums of the unfinished epoch (in checkpoints, so a resumed epoch logs the same)."""

    acc: ErrorAccumulator = field(default_factory=lambda: ErrorAccumulator(per_element=False))
    loss_sum: float = 0.0
    lr: float = math.nan


def capture(trainer: Trainer, epoch_acc: torch.Tensor | None = None) -> dict:
    s = trainer.state
    progress = {k: v for k, v in vars(s).items() if k != "history"}
    return {
        "train_config": ckpt.config_json(trainer.config),
        "model_config": trainer.prepared.model_config.model_dump_json(),
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "ema": None if trainer.ema is None else trainer.ema.state_dict(),
        "rng": ckpt.rng_state(),
        "progress": progress,
        "plan": trainer.plan.state_dict(),
        "epoch_sums": {
            "acc": trainer.sums.acc.as_tensor() if epoch_acc is None else epoch_acc,
            "loss_sum": trainer.sums.loss_sum,
            "lr": trainer.sums.lr,
        },
        "data": dict(trainer.prepared.data_hashes),
        "history": s.history,
        "groups": None if trainer.groups is None else trainer.groups.state_dict(),
    }


def restore(
    trainer: Trainer, state: dict, plan: TrainingPlan | None = None, local_sums: bool = False
) -> None:
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.schedule.load_state_dict(state["schedule"])
    if trainer.ema is not None and state["ema"] is not None:
        trainer.ema.load_state_dict(state["ema"])
    ckpt.set_rng_state(state["rng"])
    trainer.state = TrainState(**state["progress"], history=list(state["history"]))
    trainer.plan = plan or TrainingPlan.from_state(state["plan"])
    sums = state["epoch_sums"]
    trainer.sums = trainer.new_sums(loss_sum=float(sums["loss_sum"]), lr=float(sums["lr"]))
    if local_sums or trainer.comm.is_main:  # global sums: rank 0 holds them, others add theirs
        trainer.sums.acc.load_tensor(sums["acc"].double())
    if trainer.groups is not None and state.get("groups") is not None:
        trainer.groups.load_state_dict(state["groups"])
    trainer.loss = trainer.loss.with_weights(trainer.stage_weights(trainer.state.stage))


def epoch_row(
    s: TrainState, sums: EpochSums, batches: int, train: dict, valid_loss: float, valid: dict
) -> dict:
    """One row of the log (energies in eV, forces in eV/Å, stresses in eV/Å³, time in s)."""
    return {
        "epoch": s.epoch,
        "lr": sums.lr,
        "stage": s.stage,
        "train_loss": sums.loss_sum / max(batches, 1),
        "train_energy_mae": train.get("energy_mae", math.nan),
        "train_forces_mae": train.get("forces_mae", math.nan),
        "time_s": s.elapsed,
        "valid_loss": valid_loss,
        "valid_energy_mae": valid.get("energy_mae", math.nan),
        "valid_energy_per_atom_mae": valid.get("energy_per_atom_mae", math.nan),
        "valid_forces_mae": valid.get("forces_mae", math.nan),
        "valid_stress_mae": valid.get("stress_mae", math.nan),
    }
