"""What stops training from going silently wrong or losing work.

* Non-finite loss or gradient: the step is not taken; the trainer rolls back to its last good
  state (an in-memory :class:`Snapshot` taken at every clean epoch end and checkpoint), lowers
  the learning rate and replays from there. After ``optim.nonfinite_retries`` consecutive
  failures it stops with :class:`TrainingDiverged`, naming the epoch, the batch and its frames.
  Nothing non-finite is ever checkpointed or saved as a model.
* ``SIGTERM`` / ``SIGINT`` (batch systems, Ctrl-C): the current step finishes, a checkpoint is
  written and :class:`TrainingInterrupted` is raised; ``--resume`` continues exactly there.
"""

from __future__ import annotations

import copy
import signal
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from equipot.train.trainer import Trainer


class TrainingDiverged(ValueError):
    """Training produced non-finite numbers again and again; nothing bad was saved."""


class TrainingInterrupted(RuntimeError):
    """A signal asked training to stop; a checkpoint of the current step was written."""


class Snapshot:
    """A deep copy of a trainer's state (as in a checkpoint), kept in memory."""

    def __init__(self, state: dict, where: str):
        self.state = copy.deepcopy(state)
        self.where = where

    def restore(self) -> dict:
        return copy.deepcopy(self.state)


def describe_frames(frames, source: str, limit: int = 12) -> str:
    listed = ", ".join(str(int(f)) for f in frames[:limit])
    more = f", … ({len(frames)} in all)" if len(frames) > limit else ""
    return f"frames {listed}{more} of {source}"


class Interrupts:
    """Context manager: SIGTERM / SIGINT set ``requested`` instead of killing the process
    (only in the main thread; a second SIGINT interrupts at once)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> Interrupts:
        self.requested = None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def roll_back(trainer: Trainer, what: str, positions: np.ndarray | None, batches: int) -> None:
    """Restore the trainer's last good state after a non-finite ``what`` at the current batch
    (``positions`` None: in validation) and lower the learning rate; raise
    :class:`TrainingDiverged` after ``optim.nonfinite_retries`` consecutive failures."""
    s, o = trainer.state, trainer.config.optim
    if positions is None:
        place = f"epoch {s.epoch + 1}, validation ({len(trainer.valid_set)} frames)"
    else:
        frames = describe_frames(trainer.train_set.indices[positions], trainer.prepared.train.name)
        place = f"epoch {s.epoch + 1}, batch {s.batch + 1} of {batches} ({frames})"
    failures, elapsed = s.failures + 1, s.elapsed
    if failures > o.nonfinite_retries:
        path = trainer.run_dir / "checkpoint.pt"
        saved = (
            f"{path} holds the last good state" if path.exists() else "no checkpoint was written"
        )
        raise TrainingDiverged(
            f"training stopped: non-finite {what} at {place}, {failures} times in a row "
            f"(learning rate lowered ×{o.nonfinite_lr_factor} after each); nothing "
            f"non-finite was saved ({saved}). Check those frames' labels, or lower optim.lr"
        )
    snapshot = trainer.snapshot
    trainer.load_state_dict(snapshot.restore(), local_sums=True)
    trainer.state.failures, trainer.state.elapsed = failures, elapsed
    trainer.schedule.scale *= o.nonfinite_lr_factor
    trainer.report(
        f"non-finite {what} at {place}: step not taken; rolled back to {snapshot.where}, "
        f"learning rate ×{trainer.schedule.scale:.3g} of the schedule"
    )
