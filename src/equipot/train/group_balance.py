"""Training that treats groups of frames (config types) fairly.

``loss.group_balance``:

* ``inverse_frequency`` — importance weights: every config type g weighs ``1 / (G · p_g)``
  (p_g: its share of the training frames, G: number of types), so each type contributes
  equally to the loss however rare it is.
* ``dro`` — group distributionally robust optimisation (online, exponentiated gradient):
  group probabilities q_g start uniform and after every step become
  ``q_g ∝ q_g · exp(η · L_g)`` with L_g the mean per-frame loss of group g in the batch
  (η = ``loss.dro_step``); frames weigh ``q_g / p_g``, so the expected loss is Σ_g q_g L_g,
  which the updates push towards the worst group's loss.

Both multiply the user's ``config_type_weights``. Validation keeps the plain weights, so the
best model is still chosen by the ordinary loss.
"""

from __future__ import annotations

import numpy as np
import torch

from equipot.data.dataset import Batch
from equipot.physics.derivatives import Prediction


class GroupBalancer:
    def __init__(self, mode: str, step: float, dataset, user_weights: dict[str, float]):
        self.mode, self.step, self.dataset = mode, step, dataset
        self.user = user_weights
        if not hasattr(dataset, "config_types"):
            raise ValueError("loss.group_balance cannot be combined with finetune.replay")
        types = dataset.frame_arrays(["config_type"])["config_type"].astype(np.int64)
        self.names = list(dataset.config_types)
        self.type_of_frame = np.zeros(int(dataset.indices.max()) + 1, dtype=np.int64)
        self.type_of_frame[dataset.indices] = types
        counts = np.bincount(types, minlength=len(self.names)).astype(float)
        self.present = counts > 0
        self.fraction = counts / counts.sum()
        self.q = np.where(self.present, 1.0 / self.present.sum(), 0.0)
        self.apply()

    @classmethod
    def create(cls, loss_config, dataset) -> GroupBalancer | None:
        mode = getattr(loss_config, "group_balance", "none")
        if mode == "none":
            return None
        return cls(mode, loss_config.dro_step, dataset, loss_config.config_type_weights)

    def factors(self) -> np.ndarray:
        """Weight multiplier per config type."""
        f = np.ones(len(self.names))
        p = np.where(self.present, self.fraction, 1.0)
        if self.mode == "inverse_frequency":
            f = np.where(self.present, 1.0 / (self.present.sum() * p), 1.0)
        elif self.mode == "dro":
            f = np.where(self.present, self.q / p, 1.0)
        return f

    def apply(self) -> None:
        factors = self.factors()
        weights = {
            n: self.user.get(n, 1.0) * float(f) for n, f in zip(self.names, factors, strict=True)
        }
        self.dataset.set_config_type_weights(weights)

    def observe(self, pred: Prediction | None, batch: Batch | None, loss_fn, comm) -> None:
        """DRO update from this step's per-frame losses (summed over processes; a process
        without frames in this step passes None)."""
        if self.mode != "dro":
            return
        sums = torch.zeros(2, len(self.names), dtype=torch.float64)
        if pred is not None:
            per_frame = frame_losses(pred, batch, loss_fn).detach().double()
            types = torch.as_tensor(self.type_of_frame[np.asarray(batch.frames)])
            sums[0].index_add_(0, types, per_frame)
            sums[1].index_add_(0, types, torch.ones_like(per_frame))
        comm.all_reduce_(sums)
        seen = sums[1].numpy() > 0
        mean = np.where(seen, sums[0].numpy() / np.maximum(sums[1].numpy(), 1), 0.0)
        self.q = self.q * np.exp(self.step * np.minimum(mean, 50.0 / self.step))
        self.q = np.where(self.present, self.q, 0.0)
        self.q /= self.q.sum()
        self.apply()

    def state_dict(self) -> dict:
        return {"q": torch.from_numpy(self.q.copy())}

    def load_state_dict(self, state: dict) -> None:
        self.q = state["q"].numpy().astype(np.float64)
        self.apply()


def frame_losses(pred: Prediction, batch: Batch, loss_fn) -> torch.Tensor:
    """Per-frame loss ρ(ΔE/N)·w_E + mean over its force components of ρ(ΔF)·w_F."""
    w = loss_fn.weights
    n = batch.graph.n_atoms.to(pred.energy.dtype)
    out = w.energy * loss_fn.penalty((pred.energy - batch.energy) / n)
    if w.forces and pred.forces is not None:
        per_atom = loss_fn.penalty(pred.forces - batch.forces).sum(1)
        per_atom = per_atom * batch.atom_has_forces.to(per_atom.dtype)
        forces = torch.zeros_like(out).index_add(0, batch.graph.batch, per_atom)
        out = out + w.forces * forces / (3.0 * n)
    return out
