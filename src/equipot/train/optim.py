"""Optimiser, learning-rate schedule and exponential moving average (EMA) of the weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from equipot.nn.constants import parameter_list
from equipot.train.config import OptimConfig


def make_optimizer(
    model: nn.Module, cfg: OptimConfig, lr_scale: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    """Adam(W) over the trainable parameters; with ``lr_scale`` (fine-tuning), one parameter
    group per kind (embedding / interactions / readout / baseline), lr × its scale."""
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    if lr_scale:
        from equipot.train.finetune import optimizer_groups

        params = optimizer_groups(model, lr_scale)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    # fused: the whole update is one kernel over all tensors (PyTorch's CPU and CUDA fused
    # Adam); per-step Python overhead, not arithmetic, is what a small batch's update costs
    return cls(
        params,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        amsgrad=cfg.amsgrad,
        fused=True,
    )


class LRSchedule:
    """lr = base · factor, with base the stage's learning rate and factor from the schedule.

    * ``cosine``: factor = ½(1 + cos π·p) (floored at min_lr / base), p = training progress
      in [0, 1]: the fraction of the training plan's steps done (:mod:`equipot.train.plan`).
    * ``plateau``: factor × plateau_factor after ``plateau_patience`` epochs without a new
      best validation loss.
    * ``constant``: factor = 1.

    A linear warm-up over ``warmup_epochs`` multiplies all of them, and so does ``scale``,
    lowered each time training rolls back after a non-finite loss (:mod:`equipot.train.guard`).
    """

    def __init__(self, cfg: OptimConfig):
        self.cfg = cfg
        self.base = cfg.lr
        self.scale = 1.0
        self.plateau = 1.0
        self.best = math.inf
        self.bad_epochs = 0

    def lr(self, progress: float, epoch: float) -> float:
        cfg = self.cfg
        if cfg.scheduler == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        elif cfg.scheduler == "plateau":
            factor = self.plateau
        else:
            factor = 1.0
        lr = max(self.base * factor, min(cfg.min_lr, self.base))
        if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
            lr *= (epoch + 1e-3) / cfg.warmup_epochs
        return lr * self.scale

    def apply(self, optimizer: torch.optim.Optimizer, progress: float, epoch: float) -> float:
        lr = self.lr(progress, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def end_of_epoch(self, valid_loss: float) -> None:
        if valid_loss < self.best:
            self.best, self.bad_epochs = valid_loss, 0
            return
        self.bad_epochs += 1
        if self.cfg.scheduler == "plateau" and self.bad_epochs > self.cfg.plateau_patience:
            self.plateau *= self.cfg.plateau_factor
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {
            "base": self.base,
            "scale": self.scale,
            "plateau": self.plateau,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict) -> None:
        self.base = float(state["base"])
        self.scale = float(state.get("scale", 1.0))
        self.plateau = float(state["plateau"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


class EMA:
    """Shadow weights θ̄ ← d·θ̄ + (1 − d)·θ with d = min(decay, (1 + n) / (10 + n)).

    The warm-up of d (n: number of updates) keeps the first epochs from averaging in the
    random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        n = self.num_updates
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in parameter_list(model)], 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> nn.Module:
        for s, p in zip(self.shadow, model.parameters(), strict=True):
            p.copy_(s)
        return model

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for s, v in zip(self.shadow, state["shadow"], strict=True):
            s.copy_(v)
