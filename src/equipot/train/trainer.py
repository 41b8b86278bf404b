"""The training loop of one process (see :mod:`equipot.train.run` for launching it).

Per step: the global batch's frames for this process → :meth:`Trainer.loss_and_gradients`
(:func:`~equipot.train.fused_step.loss_and_gradients`: the fused C++ second-order engine on
the CPU, autograd elsewhere) → gradients summed over processes → finite? (else roll back:
:mod:`equipot.train.guard`) → clip → optimiser → EMA.
Per epoch: validation with the EMA weights, CSV / PNG log, checkpoint, best model file.
The number of steps is the training plan's (:mod:`equipot.train.plan`); checkpoints are also
written inside epochs (``output.checkpoint_minutes`` / ``checkpoint_steps``), and a resumed
run continues from the exact step, with the epoch's running sums.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from equipot.model.builder import resolve_dtype
from equipot.nn.constants import parameter_list
from equipot.progress import progress_bar
from equipot.progress import write as print_line
from equipot.train import checkpoint as ckpt
from equipot.train.config import TrainConfig
from equipot.train.distributed import Comm, sync_gradients
from equipot.train.evaluate import evaluate_dataset
from equipot.train.finetune import build_training_model
from equipot.train.fused_step import (
    fused_applies,
    loss_and_gradients,
    loss_and_gradients_split,
    split_frames,
)
from equipot.train.group_balance import GroupBalancer
from equipot.train.guard import Interrupts, Snapshot, TrainingInterrupted, roll_back
from equipot.train.history import plot_learning_curve, write_csv
from equipot.train.labels import derived_born_charges, initialise_heads, label_meta, label_weights
from equipot.train.loss import LossFunction, LossWeights, Normalisation
from equipot.train.metrics import ErrorAccumulator
from equipot.train.model import TrainingModel
from equipot.train.optim import EMA, LRSchedule, make_optimizer
from equipot.train.plan import FIX_FRACTION, TrainingPlan, recent_rate
from equipot.train.prepare import Prepared
from equipot.train.state import EpochSums, TrainState, capture, epoch_row, restore

PLOT_INTERVAL_S = 30.0


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
        self.state, self.sums = TrainState(), self.new_sums()
        o = config.optim
        per_epoch = math.ceil(len(self.train_set) / o.batch_size)
        self.plan = TrainingPlan.create(per_epoch, o.max_epochs, o.max_time_min)
        meta = self.train_set.frame_arrays(["has_forces", "has_stress"])
        self.n_atoms = self.train_set.num_atoms()
        self.has_forces, self.has_stress = meta["has_forces"], meta["has_stress"]
        lc = config.loss
        self.loss = LossFunction.create(
            self.stage_weights(1), lc.kind, lc.huber_delta, lc.element_weights
        )
        for dataset in (self.train_set, self.valid_set):
            dataset.set_config_type_weights(lc.config_type_weights)
        self.groups = GroupBalancer.create(lc, self.train_set)  # group weights / group DRO
        self.run_dir = prepared.run_dir
        self._last_plot = -math.inf
        self._last_checkpoint = time.perf_counter()
        self.snapshot: Snapshot | None = None
        self._timed_from: tuple[int, float] | None = None  # (step, elapsed) after warm-up
        self._epoch_clock: list[tuple[int, float]] = []  # (step, elapsed) at epoch ends
        self.interrupts = Interrupts()

    # ------------------------------------------------------------------ state
    def stage_weights(self, stage: int) -> LossWeights:
        src = self.config.optim.stage_two if stage == 2 else self.config.loss
        return LossWeights(
            src.energy_weight, src.forces_weight, src.stress_weight, self.label_weights
        )

    def new_sums(self, **values) -> EpochSums:
        """Empty running sums of an epoch (``values``: loss_sum, lr)."""
        acc = ErrorAccumulator(per_element=False, labels=self.label_weights)
        return EpochSums(acc=acc, **values)

    def state_dict(self, epoch_acc: torch.Tensor | None = None) -> dict:
        """Everything a checkpoint holds (``epoch_acc``: the epoch's global error sums)."""
        return capture(self, epoch_acc)

    def load_state_dict(
        self, state: dict, plan: TrainingPlan | None = None, local_sums: bool = False
    ) -> None:
        """Continue from ``state`` (a checkpoint, or a snapshot: ``local_sums``)."""
        restore(self, state, plan, local_sums)

    # ------------------------------------------------------------------ loop
    def train(self, progress_bar: bool = True) -> TrainState:
        o = self.config.optim
        self.report(f"training plan: {self.plan.describe()}")
        with self.interrupts:
            self.snapshot = Snapshot(self.state_dict(), self._where())
            while not self.plan.finished(self.state.step):
                if self.state.batch == 0:
                    self._maybe_enter_stage_two()
                if not self._train_epoch(progress_bar) or not self._end_of_epoch():
                    continue  # rolled back after a non-finite loss: replay
                patience = o.early_stop_patience
                if patience and self.state.epoch - self.state.best_epoch - 1 >= patience:
                    self.report(f"early stop: no better validation loss for {patience} epochs")
                    break
        return self.state

    def _maybe_enter_stage_two(self) -> None:
        two = self.config.optim.stage_two
        if two is None or self.state.stage == 2 or not self.plan.fixed:
            return
        if self.plan.progress(self.state.step) >= two.start_fraction:
            self.state.stage = 2
            self.loss = self.loss.with_weights(self.stage_weights(2))
            if two.lr is not None:
                self.schedule.base = two.lr
            self.state.best_loss = math.inf  # new loss: best model chosen within stage two
            self.schedule.best, self.schedule.bad_epochs = math.inf, 0
            self.report(f"epoch {self.state.epoch}: stage two (loss weights {self.loss.weights})")

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches of ``epoch`` (positions in the training set): (seed, epoch)."""
        n, size = len(self.train_set), self.config.optim.batch_size
        order = np.random.default_rng([self.config.seed, epoch]).permutation(n)
        return [order[k : k + size] for k in range(0, n, size)]

    def _batches_this_epoch(self, count: int) -> int:
        if not self.plan.fixed:
            return count
        return min(count, self.plan.total_steps - self.state.epoch * self.plan.steps_per_epoch)

    def _train_epoch(self, progress_bar: bool) -> bool:
        """Steps to the end of the epoch (or of the plan); False after a roll-back."""
        s = self.state
        batches = self.epoch_batches(s.epoch)
        bar = progress_bar_for(self, len(batches), progress_bar)
        start = time.perf_counter() - s.elapsed
        try:
            while s.batch < self._batches_this_epoch(len(batches)):
                positions = batches[s.batch]
                epoch_f = s.epoch + s.batch / len(batches)
                lr = self.schedule.apply(self.optimizer, self.plan.progress(s.step), epoch_f)
                loss, elapsed, flags = self._step(positions, start)
                if flags["problem"]:
                    roll_back(self, flags["problem"], positions, len(batches))
                    return False
                s.step, s.batch, s.elapsed = s.step + 1, s.batch + 1, elapsed
                self.sums.loss_sum += loss
                self.sums.lr = lr
                if self._timed_from is None:  # the process's first step: warm-up, not timed
                    self._timed_from = (s.step, s.elapsed)
                if self.plan.due_to_fix(elapsed, False, s.step - self._timed_from[0]):
                    self._fix_plan()
                live = self.sums.acc.results()
                bar.set_postfix(
                    loss=f"{self.sums.loss_sum / s.batch:.4g}",
                    E_meV=f"{1e3 * live.get('energy_mae', math.nan):.3g}",
                    F_meV_A=f"{1e3 * live.get('forces_mae', math.nan):.3g}",
                    lr=f"{lr:.2g}",
                    refresh=False,
                )
                bar.update()
                if flags["interrupt"]:
                    self.save_checkpoint()
                    raise TrainingInterrupted(
                        f"training interrupted ({self.interrupts.requested or 'signal'}) at "
                        f"{self._where()}; {self.run_dir / 'checkpoint.pt'} holds this step: "
                        "continue with --resume"
                    )
                if flags["checkpoint"]:
                    self.save_checkpoint()
        finally:
            bar.close()
        return True

    def loss_and_gradients(self, positions: np.ndarray, norm: Normalisation) -> float:
        """This process's share of a global batch: accumulate ∂L/∂θ into ``.grad`` (the
        fused step) and the errors into the epoch sums, update the group weights (group DRO,
        collective); return this process's part of the loss (the parts of all processes add
        up to the batch loss). One call per optimiser step."""
        comm = self.comm
        mine = positions[comm.rank :: comm.world_size]
        loss_value, pred, batch = 0.0, None, None
        parts = self._parts(mine)
        if len(parts) > 1:  # the fused step on one part per thread, at once
            batches = [self.train_set.batch(p, self.dtype, self.reference) for p in parts]
            want_stress = bool(self.loss.weights.stress) and any(
                bool(b.has_stress.any()) for b in batches
            )
            loss_value, preds = loss_and_gradients_split(
                self.model, batches, self.loss, norm, stress=want_stress
            )
            for part_pred, part in zip(preds, batches, strict=True):
                self.sums.acc.update(part_pred, part)
        elif len(mine):
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
            self.sums.acc.update(pred, batch)
        if self.groups is not None:  # group DRO: reweight groups for the next step
            self.groups.observe(pred, batch, self.loss, comm)
        return float(loss_value)

    # Atoms per part from which a split batch is faster. An engine call has a fixed cost
    # (≈ 2,200 ATen operations whatever the atom count, ≈ 3 ms at 64 channels), which a split
    # pays once per part: measured on 2 threads, split 6-frame batches of aspirin (63 atoms
    # per part) took 0.88× the time of one 2-thread pass, of ethanol (27) 1.0–1.15×.
    split_min_atoms = 40

    def _parts(self, mine: np.ndarray) -> list[np.ndarray]:
        """This process's frames as one part per thread (balanced by atoms) where the fused
        step applies, every thread gets a frame and the parts are big enough to pay for their
        own engine call (``split_min_atoms``); else one part (fused_step:
        loss_and_gradients_split)."""
        threads = torch.get_num_threads()
        if (
            threads < 2
            or len(mine) < threads
            or self.n_atoms[mine].sum() < threads * self.split_min_atoms
            or self.groups is not None  # group DRO reweights from the whole batch's errors
            or self.born_charges
            or not fused_applies(self.model, self.dtype)
        ):
            return [mine]
        return split_frames(mine, self.n_atoms[mine], threads)

    def _step(self, positions: np.ndarray, start: float) -> tuple[float, float, dict]:
        """One optimiser step unless the loss or gradient is not finite (then nothing changes
        and flags["problem"] says what); returns (global loss, elapsed s, flags agreed by all
        processes)."""
        cfg, comm = self.config, self.comm
        norm = Normalisation.of(
            self.n_atoms[positions],
            self.has_forces[positions],
            self.has_stress[positions],
            {n: (has[positions], *rest) for n, (has, *rest) in self.label_meta.items()},
        )
        self.optimizer.zero_grad(set_to_none=False)
        loss = self.loss_and_gradients(positions, norm)
        now = time.perf_counter()
        checkpoint_due = self._checkpoint_due(now)
        mine = [loss, now - start, float(checkpoint_due), float(bool(self.interrupts.requested))]
        if not comm.is_main:
            mine[1:3] = [0.0, 0.0]  # rank 0's clock and checkpoint decision count
        extra = sync_gradients(self.model, comm, torch.tensor(mine, dtype=torch.float64))
        loss, elapsed, checkpoint_flag, interrupt = extra.tolist()
        params = [p for p in parameter_list(self.model) if p.grad is not None]
        if cfg.optim.grad_clip:
            norm_value = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip, foreach=True)
        else:
            norm_value = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        problem = None
        if not math.isfinite(loss):
            problem = f"loss ({loss})"
        elif not math.isfinite(float(norm_value)):
            problem = f"gradient (norm {float(norm_value)}, loss {loss:.4g})"
        else:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
        flags = {"checkpoint": checkpoint_flag > 0, "interrupt": interrupt > 0, "problem": problem}
        return loss, elapsed, flags

    def _checkpoint_due(self, now: float) -> bool:
        out = self.config.output
        if out.checkpoint_steps and (self.state.step + 1) % out.checkpoint_steps == 0:
            return True
        minutes = out.checkpoint_minutes
        return minutes is not None and now - self._last_checkpoint >= 60.0 * minutes

    def _fix_plan(self) -> None:
        s = self.state
        step0, elapsed0 = self._timed_from or (0, 0.0)
        if s.step - step0 < 1:
            step0, elapsed0 = 0, 0.0
        self.plan.fix((s.elapsed - elapsed0) / max(s.step - step0, 1), s.step)
        self.report(f"training plan fixed: {self.plan.describe()}")

    def _recent_rate(self) -> float:
        s = self.state
        window = FIX_FRACTION * 60.0 * (self.plan.max_time_min or 0.0)
        since = self._timed_from or (0, 0.0)
        return recent_rate(self._epoch_clock, (s.step, s.elapsed), since, window)

    def _where(self) -> str:
        s = self.state
        if s.batch:
            return f"epoch {s.epoch + 1}, batch {s.batch} (step {s.step})"
        return f"the end of epoch {s.epoch} (step {s.step})"

    def averaged_model(self):
        """The weights validation and model files use: the EMA ones if EMA is on."""
        if self.ema is None:
            return self.model
        return self.ema.copy_to(copy.deepcopy(self.model))

    def _end_of_epoch(self) -> bool:
        """Validate, log, checkpoint; False if validation was not finite (rolled back)."""
        s = self.state
        started = time.perf_counter()
        model = self.averaged_model()
        valid = evaluate_dataset(
            model,
            self.valid_set,
            batch_size=self.config.optim.valid_batch_size,
            dtype=self.dtype,
            energy_reference=self.reference,
            comm=self.comm,
            loss=self.loss,
            born_charges=self.born_charges,
        )
        valid_loss, metrics = valid.loss_sum, valid.results()
        if not math.isfinite(valid_loss):
            roll_back(self, f"validation loss ({valid_loss})", None, 0)
            return False
        row = self._epoch_row(valid_loss, metrics, started)
        s.history.append(row)
        improved = valid_loss < s.best_loss
        if improved:
            s.best_loss, s.best_epoch = valid_loss, s.epoch - 1
        self.schedule.end_of_epoch(valid_loss)
        s.failures = 0
        self.sums = self.new_sums()
        if self.comm.is_main:
            if improved:
                self.save_model(model, self.run_dir / "best.eqp", metrics)
            write_csv(self.run_dir / "log.csv", s.history)
            if self.config.output.plot and time.perf_counter() - self._last_plot > PLOT_INTERVAL_S:
                self.plot()
        self.save_checkpoint()
        self.report(
            f"epoch {s.epoch:4d}  {s.elapsed:7.1f} s  lr {row['lr']:.2e}  "
            f"train loss {row['train_loss']:.4g}  valid loss {valid_loss:.4g}  "
            f"E {1e3 * row['valid_energy_mae']:.3g} meV  "
            f"F {1e3 * row['valid_forces_mae']:.3g} meV/Å" + ("  *" if improved else "")
        )
        return True

    def _epoch_row(self, valid_loss: float, metrics: dict, started: float) -> dict:
        s, comm = self.state, self.comm
        acc = copy.deepcopy(self.sums.acc)
        acc.load_tensor(comm.all_reduce_(acc.as_tensor()))
        train = acc.results()
        batches = s.batch
        s.epoch, s.batch = s.epoch + 1, 0
        spent = time.perf_counter() - started
        clock = torch.tensor([clock_share(s.elapsed, spent, comm.is_main)], dtype=torch.float64)
        s.elapsed = float(comm.all_reduce_(clock)[0])
        if self.plan.due_to_fix(s.elapsed, end_of_epoch=True):
            self._fix_plan()
        elif self.plan.revise(s.step, s.elapsed, self._recent_rate()):
            self.report(f"training plan revised at the measured speed: {self.plan.describe()}")
        self._epoch_clock.append((s.step, s.elapsed))
        row = epoch_row(s, self.sums, batches, train, valid_loss, metrics)
        return row | {
            f"valid_{n}_mae": metrics.get(f"{n}_mae", math.nan) for n in self.label_weights
        }

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt (rank 0); every process calls it at the same step."""
        acc = self.sums.acc.as_tensor()
        if self.comm.world_size > 1 and self.state.batch:
            acc = self.comm.all_reduce_(acc.clone())
        if self.comm.is_main:
            ckpt.save_checkpoint(self.run_dir / "checkpoint.pt", self.state_dict(acc))
        self.snapshot = Snapshot(self.state_dict(), self._where())  # a good state
        self._last_checkpoint = time.perf_counter()

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

    def report(self, text: str) -> None:
        if self.comm.is_main and self.verbose:
            print_line(text)


def progress_bar_for(trainer: Trainer, batches: int, enabled: bool):
    """The per-epoch bar: live on a terminal; elsewhere a line a minute (the epoch line is
    printed anyway)."""
    s = trainer.state
    return progress_bar(
        batches,
        f"epoch {s.epoch + 1}",
        "batch",
        enabled=enabled and trainer.comm.is_main,
        leave=False,
        initial=s.batch,
        fraction=None,
        seconds=60.0,
    )


def clock_share(elapsed: float, spent: float, is_main: bool) -> float:
    """This process's term of the summed training clock: rank 0's time decides for everyone
    (validation counts towards the budget), so the other ranks add nothing — not even the
    elapsed time they already share, which would double the clock every epoch."""
    return elapsed + spent if is_main else 0.0
