"""A reference calculator that records every completed calculation (for the learn tests)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ase.calculators.emt import EMT


class CountingEMT(EMT):
    """EMT that sleeps ``delay`` s before each calculation and, once it has finished, appends
    a line naming the structure to ``counter``."""

    def __init__(self, counter: str, delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.counter, self.delay = Path(counter), delay

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        time.sleep(self.delay)
        super().calculate(atoms, properties, system_changes or ["positions"])
        digest = hashlib.sha1(self.atoms.positions.round(8).tobytes()).hexdigest()
        with open(self.counter, "a") as f:
            f.write(f"{digest} {os.getpid()}\n")
