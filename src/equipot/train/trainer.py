"""The training loop of one process (see :mod:`equipot.train.run` for launching it).

Per step: the global batch's frames for this process → loss and its parameter gradients
(:func:`~equipot.train.fused_step.loss_and_gradients`: the fused C++ second-order engine on
the CPU, autograd elsewhere) → gradients summed over processes → clip → optimiser → EMA.
Per epoch: validation with the EMA weights, CSV / PNG log, checkpoint, best model file.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from equipot.model.builder import resolve_dtype
from equipot.train import checkpoint as ckpt
from equipot.train.config import TrainConfig
from equipot.train.distributed import Comm, sync_gradients
from equipot.train.evaluate import evaluate_dataset
from equipot.train.finetune import build_training_model
from equipot.train.fused_step import loss_and_gradients
from equipot.train.group_balance import GroupBalancer
from equipot.train.history import plot_learning_curve, write_csv
from equipot.train.labels import derived_born_charges, initialise_heads, label_meta, label_weights
from equipot.train.loss import LossFunction, LossWeights, Normalisation
from equipot.train.metrics import ErrorAccumulator
from equipot.train.model import TrainingModel
from equipot.train.optim import EMA, LRSchedule, make_optimizer
from equipot.train.prepare import Prepared

PLOT_INTERVAL_S = 30.0


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    elapsed: float = 0.0  # seconds of training so far (across resumes)
    best_loss: float = math.inf
    best_epoch: int = -1
    stage: int = 1
    history: list = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        prepared: Prepared,
        comm: Comm | None = None,
        verbose: bool = True,
    ):
        self.config, self.prepared, self.comm = config, prepared, comm or Comm()
        self.verbose = verbose  # one line per epoch (the live bar is output.progress)
        self.dtype = resolve_dtype(config.dtype)
        self.train_set = prepared.train.open(config.data.in_memory)
        self.valid_set = prepared.valid.open(config.data.in_memory)
        self.reference = prepared.energy_reference()
        # The network learns E − Σ E0 (labels referenced in float64); E0 is put back in the
        # saved model files. Same function, but float32 training keeps sub-meV resolution.
        self.model = build_training_model(config, prepared)  # fine-tuning: from a base model
        model_config = prepared.model_config
        self.label_weights = label_weights(model_config, config.loss.label_weights)
        self.born_charges = derived_born_charges(model_config, self.label_weights)
        self.label_meta = label_meta(self.train_set, self.label_weights)
        if config.finetune is None:  # a fine-tuned model keeps its base model's heads
            initialise_heads(self.model, self.train_set, self.dtype)  # resume overwrites it
        lr_scale = config.finetune.lr_scale if config.finetune else {}
        self.optimizer = make_optimizer(self.model, config.optim, lr_scale)
        self.schedule = LRSchedule(config.optim)
        decay = config.optim.ema_decay
        self.ema = EMA(self.model, decay) if decay else None
        self.state = TrainState()
        meta = self.train_set.frame_arrays(["has_forces", "has_stress"])
        self.n_atoms = self.train_set.num_atoms()
        self.has_forces, self.has_stress = meta["has_forces"], meta["has_stress"]
        lc = config.loss
        self.loss = LossFunction.create(
            self._stage_weights(1), lc.kind, lc.huber_delta, lc.element_weights
        )
        for dataset in (self.train_set, self.valid_set):
            dataset.set_config_type_weights(lc.config_type_weights)
        self.groups = GroupBalancer.create(lc, self.train_set)  # group weights / group DRO
        self.run_dir = prepared.run_dir
        self._last_plot = -math.inf

    # ------------------------------------------------------------------ state
    def _stage_weights(self, stage: int) -> LossWeights:
        src = self.config.optim.stage_two if stage == 2 else self.config.loss
        return LossWeights(
            src.energy_weight, src.forces_weight, src.stress_weight, self.label_weights
        )

    def state_dict(self) -> dict:
        s = self.state
        return {
            "train_config": ckpt.config_json(self.config),
            "model_config": self.prepared.model_config.model_dump_json(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rng": ckpt.rng_state(),
            "progress": {
                "epoch": s.epoch,
                "step": s.step,
                "elapsed": s.elapsed,
                "best_loss": s.best_loss,
                "best_epoch": s.best_epoch,
                "stage": s.stage,
            },
            "history": s.history,
            "groups": None if self.groups is None else self.groups.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        ckpt.set_rng_state(state["rng"])
        self.state = TrainState(**state["progress"], history=list(state["history"]))
        if self.groups is not None and state.get("groups") is not None:
            self.groups.load_state_dict(state["groups"])
        self.loss = self.loss.with_weights(self._stage_weights(self.state.stage))

    # ------------------------------------------------------------------ loop
    def progress(self, epoch: float) -> float:
        o = self.config.optim
        by_time = self.state.elapsed / (60 * o.max_time_min) if o.max_time_min else 0.0
        return max(epoch / o.max_epochs, by_time)

    def out_of_time(self) -> bool:
        budget = self.config.optim.max_time_min
        return budget is not None and self.state.elapsed >= 60 * budget

    def train(self, progress_bar: bool = True) -> TrainState:
        o = self.config.optim
        stop = False
        while self.state.epoch < o.max_epochs and not stop:
            self._maybe_enter_stage_two()
            stop = self._train_epoch(progress_bar)
            self._end_of_epoch()
            if o.early_stop_patience and self.state.epoch - self.state.best_epoch - 1 >= (
                o.early_stop_patience
            ):
                stop = True
            stop = stop or self.out_of_time()
        return self.state

    def _maybe_enter_stage_two(self) -> None:
        two = self.config.optim.stage_two
        if two is None or self.state.stage == 2:
            return
        if self.progress(self.state.epoch) >= two.start_fraction:
            self.state.stage = 2
            self.loss = self.loss.with_weights(self._stage_weights(2))
            if two.lr is not None:
                self.schedule.base = two.lr
            self.state.best_loss = math.inf  # new loss: best model chosen within stage two
            self.schedule.best, self.schedule.bad_epochs = math.inf, 0
            self._print(f"epoch {self.state.epoch}: stage two (loss weights {self.loss.weights})")

    def _train_epoch(self, progress_bar: bool) -> bool:
        cfg, comm, s = self.config, self.comm, self.state
        n = len(self.train_set)
        order = np.random.default_rng([cfg.seed, s.epoch]).permutation(n)
        batches = [order[k : k + cfg.optim.batch_size] for k in range(0, n, cfg.optim.batch_size)]
        bar = tqdm(
            total=len(batches),
            desc=f"epoch {s.epoch + 1}",
            leave=False,
            disable=not (progress_bar and comm.is_main),
            dynamic_ncols=True,
        )
        acc, loss_sum = ErrorAccumulator(per_element=False, labels=self.label_weights), 0.0
        params = list(self.model.parameters())
        start = time.perf_counter() - s.elapsed
        for k, positions in enumerate(batches):
            epoch_f = s.epoch + k / len(batches)
            lr = self.schedule.apply(self.optimizer, self.progress(epoch_f), epoch_f)
            norm = Normalisation.of(
                self.n_atoms[positions],
                self.has_forces[positions],
                self.has_stress[positions],
                {n: (has[positions], *rest) for n, (has, *rest) in self.label_meta.items()},
            )
            self.optimizer.zero_grad(set_to_none=False)
            mine = positions[comm.rank :: comm.world_size]
            loss_value = 0.0
            if len(mine):
                batch = self.train_set.batch(mine, self.dtype, self.reference)
                want_stress = bool(self.loss.weights.stress) and bool(batch.has_stress.any())
                loss_value, pred = loss_and_gradients(
                    self.model,
                    batch,
                    self.loss,
                    norm,
                    stress=want_stress,
                    born_charges=self.born_charges,
                )
                acc.update(pred, batch)
            if self.groups is not None:  # group DRO: reweight groups for the next step
                self.groups.observe(
                    *((pred, batch) if len(mine) else (None, None)), self.loss, comm
                )
            elapsed = time.perf_counter() - start if comm.is_main else 0.0
            extra = torch.tensor([loss_value, elapsed], dtype=torch.float64)
            extra = sync_gradients(self.model, comm, extra)
            if extra is not None:
                loss_value, elapsed = float(extra[0]), float(extra[1])
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip, foreach=True)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            s.step += 1
            s.elapsed = elapsed
            loss_sum += loss_value
            live = acc.results()
            bar.set_postfix(
                loss=f"{loss_sum / (k + 1):.4g}",
                E_meV=f"{1e3 * live.get('energy_mae', math.nan):.3g}",
                F_meV_A=f"{1e3 * live.get('forces_mae', math.nan):.3g}",
                lr=f"{lr:.2g}",
                refresh=False,
            )
            bar.update()
            if self.out_of_time():
                break
        bar.close()
        acc.load_tensor(comm.all_reduce_(acc.as_tensor()))
        train = acc.results()
        self._epoch_row = {
            "epoch": s.epoch + 1,
            "lr": lr,
            "stage": s.stage,
            "train_loss": loss_sum / max(k + 1, 1),
            "train_energy_mae": train.get("energy_mae", math.nan),
            "train_forces_mae": train.get("forces_mae", math.nan),
        }
        return self.out_of_time()

    def averaged_model(self):
        """The weights validation and model files use: the EMA ones if EMA is on."""
        if self.ema is None:
            return self.model
        return self.ema.copy_to(copy.deepcopy(self.model))

    def _end_of_epoch(self) -> None:
        s, cfg = self.state, self.config
        started = time.perf_counter()
        model = self.averaged_model()
        valid = evaluate_dataset(
            model,
            self.valid_set,
            batch_size=cfg.optim.valid_batch_size,
            dtype=self.dtype,
            energy_reference=self.reference,
            comm=self.comm,
            loss=self.loss,
            born_charges=self.born_charges,
        )
        valid_loss = valid.loss_sum
        metrics = valid.results()
        s.epoch += 1
        # validation counts towards the time budget; rank 0's clock decides for everyone
        spent = time.perf_counter() - started if self.comm.is_main else 0.0
        clock = torch.tensor([s.elapsed + spent], dtype=torch.float64)
        s.elapsed = float(self.comm.all_reduce_(clock)[0])
        row = (
            self._epoch_row
            | {
                "time_s": s.elapsed,
                "valid_loss": valid_loss,
                "valid_energy_mae": metrics.get("energy_mae", math.nan),
                "valid_energy_per_atom_mae": metrics.get("energy_per_atom_mae", math.nan),
                "valid_forces_mae": metrics.get("forces_mae", math.nan),
                "valid_stress_mae": metrics.get("stress_mae", math.nan),
            }
            | {f"valid_{n}_mae": metrics.get(f"{n}_mae", math.nan) for n in self.label_weights}
        )
        s.history.append(row)
        improved = valid_loss < s.best_loss
        if improved:
            s.best_loss, s.best_epoch = valid_loss, s.epoch - 1
        self.schedule.end_of_epoch(valid_loss)
        if not self.comm.is_main:
            return
        if improved:
            self.save_model(model, self.run_dir / "best.eqp", metrics)
        write_csv(self.run_dir / "log.csv", s.history)
        if cfg.output.plot and time.perf_counter() - self._last_plot > PLOT_INTERVAL_S:
            self.plot()
        ckpt.save_checkpoint(self.run_dir / "checkpoint.pt", self.state_dict())
        self._print(
            f"epoch {s.epoch:4d}  {s.elapsed:7.1f} s  lr {row['lr']:.2e}  "
            f"train loss {row['train_loss']:.4g}  valid loss {valid_loss:.4g}  "
            f"E {1e3 * row['valid_energy_mae']:.3g} meV  "
            f"F {1e3 * row['valid_forces_mae']:.3g} meV/Å" + ("  *" if improved else "")
        )

    def plot(self) -> None:
        """Learning-curve PNG (every epoch is costly for fast epochs: at most every 30 s)."""
        if self.comm.is_main and self.config.output.plot and self.state.history:
            plot_learning_curve(self.run_dir / "learning_curve.png", self.state.history)
            self._last_plot = time.perf_counter()

    def save_model(self, model: TrainingModel, path, metrics: dict | None = None):
        return model.save(
            path,
            extra={
                "train_config": self.config.model_dump(mode="json"),
                "epoch": self.state.epoch,
                "valid_metrics": metrics or {},
            },
        )

    def _print(self, text: str) -> None:
        if self.comm.is_main and self.verbose:
            tqdm.write(text)
