"""The training plan: how many optimiser steps a run takes, fixed once and stored.

The learning-rate schedule and the start of stage two are measured in steps of the plan
(progress p = step / total_steps), never in wall time, so a resumed run follows exactly the
path an uninterrupted one would.

* Epoch budget only (``max_time_min`` unset): total_steps = max_epochs · steps_per_epoch,
  known from the start.
* Time budget: the plan is fixed once, at the end of the first epoch (or earlier, once 10 % of
  the budget is spent inside it), from the measured seconds per step (validation included,
  the process's first step — allocation, warm-up — left out):
  n = ⌊budget / (seconds per step)⌋, rounded down to whole epochs when n ≥ one epoch and
  capped at max_epochs. Until then p = 0.
* Revision (time budget): a machine's speed drifts (another job starts on the same cores,
  later epochs save more checkpoints), so a plan fixed from the first epoch can overrun the
  budget by a third. At every epoch end the projected end, elapsed + (total − step)·rate at
  the recent rate, is compared with the budget; the plan is re-fixed (total_steps =
  step + ⌊(budget − elapsed)/rate⌋, whole epochs) when the projected end overruns it by more
  than REVISE_SLACK or ends more than REVISE_SLACK and one epoch early. The revised plan is
  stored like the first, so p stays a pure function of the stored state.
* ``extend``: a new (larger) budget replaces the old one; the new total is computed from the
  recorded seconds per step, so extending is deterministic too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

FIX_FRACTION = 0.1  # fix a time-budget plan inside epoch 1 once this much budget is spent
REVISE_SLACK = 0.02  # fraction of the budget a projected end may miss it by before revising


@dataclass
class TrainingPlan:
    steps_per_epoch: int
    max_epochs: int
    max_time_min: float | None = None
    total_steps: int | None = None  # None until fixed (time budget)
    seconds_per_step: float | None = None  # measured when fixed from a time budget
    revisions: int = 0  # times a time-budget plan was re-fixed from a later rate

    @classmethod
    def create(cls, steps_per_epoch: int, max_epochs: int, max_time_min: float | None):
        plan = cls(steps_per_epoch, max_epochs, max_time_min)
        if max_time_min is None:
            plan.total_steps = max_epochs * steps_per_epoch
        return plan

    @property
    def fixed(self) -> bool:
        return self.total_steps is not None

    @property
    def total_epochs(self) -> int | None:
        if self.total_steps is None:
            return None
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def progress(self, step: float) -> float:
        """Fraction of the plan done (0 while a time-budget plan is not fixed yet)."""
        if not self.total_steps:
            return 0.0
        return min(max(step / self.total_steps, 0.0), 1.0)

    def finished(self, step: int) -> bool:
        return self.total_steps is not None and step >= self.total_steps

    def cap_steps(self) -> int:
        return self.max_epochs * self.steps_per_epoch

    def steps_for_budget(self, seconds_per_step: float, done: int) -> int:
        budget = 60.0 * self.max_time_min if self.max_time_min else math.inf
        rate = max(seconds_per_step, 1e-9)
        n = self.cap_steps() if math.isinf(budget) else int(budget / rate * (1 + 1e-12))
        n = min(n, self.cap_steps())
        if n >= self.steps_per_epoch:
            n -= n % self.steps_per_epoch
        return max(n, done, 1)

    def due_to_fix(self, elapsed: float, end_of_epoch: bool, timed_steps: int = 0) -> bool:
        if self.fixed:
            return False
        spent = elapsed >= FIX_FRACTION * 60.0 * (self.max_time_min or 0.0)
        return end_of_epoch or (spent and timed_steps >= 3)

    def fix(self, seconds_per_step: float, steps_done: int) -> None:
        """Fix the plan from the measured time per step."""
        self.seconds_per_step = seconds_per_step
        self.total_steps = self.steps_for_budget(seconds_per_step, steps_done)

    def revise(self, step: int, elapsed: float, seconds_per_step: float) -> bool:
        """Re-fix a time-budget plan at an epoch end from the recent ``seconds_per_step``
        when its projected end misses the budget (see the module docstring); True if it did."""
        if not self.max_time_min or not self.fixed or self.finished(step):
            return False
        budget, rate = 60.0 * self.max_time_min, max(seconds_per_step, 1e-9)
        end = elapsed + (self.total_steps - step) * rate
        early = budget - end > REVISE_SLACK * budget + self.steps_per_epoch * rate
        if end <= (1.0 + REVISE_SLACK) * budget and not early:
            return False
        n = step + int(max(budget - elapsed, 0.0) / rate)
        n = min(n, self.cap_steps())
        if n - step >= self.steps_per_epoch:
            n -= (n - step) % self.steps_per_epoch  # whole epochs from here
        if n == self.total_steps:
            return False
        self.total_steps, self.seconds_per_step = max(n, step), seconds_per_step
        self.revisions += 1
        return True

    def extended(self, max_epochs: int, max_time_min: float | None, step: int, elapsed: float):
        """The plan for a larger budget (``--extend``); raises if it adds no step."""
        plan = TrainingPlan(self.steps_per_epoch, max_epochs, max_time_min)
        if max_time_min is None:
            plan.total_steps = plan.cap_steps()
        else:
            rate = self.seconds_per_step or elapsed / max(step, 1)
            plan.seconds_per_step = rate
            plan.total_steps = plan.steps_for_budget(rate, 0)
        if plan.total_steps <= step:
            raise ValueError(
                f"--extend: the new budget (max_epochs {max_epochs}, max_time_min "
                f"{max_time_min}) gives {plan.total_steps} steps, but {step} are done already; "
                "give a larger optim.max_epochs or optim.max_time_min"
            )
        return plan

    def describe(self) -> str:
        if not self.fixed:
            return (
                f"{self.steps_per_epoch} steps per epoch; total fixed from the "
                f"{self.max_time_min:g}-min budget after the first epoch"
            )
        text = (
            f"{self.total_steps} steps ({self.total_steps / self.steps_per_epoch:.4g} epochs "
            f"of {self.steps_per_epoch})"
        )
        if self.seconds_per_step is not None:
            text += (
                f", from the {self.max_time_min:g}-min budget at "
                f"{self.seconds_per_step:.3g} s per step"
            )
        return text

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> TrainingPlan:
        return cls(**state)


def recent_rate(
    clock: list[tuple[int, float]],
    now: tuple[int, float],
    since: tuple[int, float],
    window: float,
) -> float:
    """Seconds per step from the latest epoch end in ``clock`` ((step, elapsed) per epoch end,
    in order) that lies at least ``window`` seconds before ``now`` (else from the earliest
    epoch end after ``since``, the first timed step, or from ``since``) to ``now``."""
    start = since
    for step, elapsed in reversed(clock):
        if step <= since[0] or step >= now[0]:
            break
        start = (step, elapsed)
        if now[1] - elapsed >= window:
            break
    return (now[1] - start[1]) / max(now[0] - start[0], 1)
