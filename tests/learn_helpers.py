"""A reference calculator that records every completed calculation (for the learn tests)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ase.calculators.emt import EMT


class CountingEMT(EMT):
    """EMT that appends a line naming the structure to ``counter`` after each calculation.

    ``hold``: before starting a calculation when ``counter`` already has k ≥ hold[j] lines,
    create ``<counter>.hold-<j>-<pid>`` and sleep until ``<counter>.release-<j>`` exists, so a
    test can kill the loop while every worker is inside a calculation (never between one
    finishing and its frame being saved).
    """

    def __init__(self, counter: str, delay: float = 0.0, hold: list[int] = (), **kwargs):
        super().__init__(**kwargs)
        self.counter, self.delay, self.hold = Path(counter), delay, list(hold)

    def _wait_if_held(self) -> None:
        done = len(self.counter.read_text().splitlines()) if self.counter.exists() else 0
        for j, k in enumerate(self.hold):
            release = self.counter.with_name(f"{self.counter.name}.release-{j}")
            if done >= k and not release.exists():
                self.counter.with_name(f"{self.counter.name}.hold-{j}-{os.getpid()}").touch()
                while not release.exists():
                    time.sleep(0.05)

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        self._wait_if_held()
        time.sleep(self.delay)
        super().calculate(atoms, properties, system_changes or ["positions"])
        digest = hashlib.sha1(self.atoms.positions.round(8).tobytes()).hexdigest()
        with open(self.counter, "a") as f:
            f.write(f"{digest} {os.getpid()}\n")
