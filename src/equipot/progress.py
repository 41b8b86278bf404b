"""Progress display: a live tqdm bar on a terminal, a few plain lines everywhere else.

When stderr is not a terminal (CI, ``nohup``, a batch system's log file) a carriage-return
progress bar writes thousands of updates into the log. :func:`progress_bar` returns a tqdm
bar on a terminal (or in Jupyter) and otherwise a :class:`LineProgress` that prints one line
every ``fraction`` of the total and every ``seconds`` of wall time (whichever comes first),
plus one at the end. ``EQUIPOT_PROGRESS=bar`` or ``=lines`` forces either.
"""

from __future__ import annotations

import os
import sys
import time


def interactive() -> bool:
    """Whether progress bars make sense here (a terminal, or a Jupyter kernel)."""
    forced = os.environ.get("EQUIPOT_PROGRESS", "").lower()
    if forced in ("bar", "lines"):
        return forced == "bar"
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """The tqdm methods equipot uses, printing a line now and then instead of redrawing."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        fraction: float | None = 0.1,
        seconds: float = 60.0,
        file=None,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._printed = self._initial = initial
        self.fraction, self.seconds = fraction, seconds
        self.file = file
        self.postfix: dict = {}
        self._start = self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        due = now - self._last >= self.seconds
        if self.fraction and self.total:
            due = due or self.n - self._printed >= max(1, round(self.fraction * self.total))
        if due:
            self._emit(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = False, **kwargs) -> None:
        self.postfix = dict(ordered_dict or {}, **kwargs)

    def set_description(self, desc: str, refresh: bool = False) -> None:
        self.desc = desc

    def _emit(self, now: float) -> None:
        rate = (self.n - self._initial) / max(now - self._start, 1e-9)
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = "".join(f"  {k} {v}" for k, v in self.postfix.items())
        prefix = f"{self.desc}: " if self.desc else ""
        out = self.file or sys.stderr
        print(f"{prefix}{count} {self.unit}{share}, {rate:.3g} {self.unit}/s{extra}", file=out)
        out.flush()
        self._printed, self._last = self.n, now

    def close(self) -> None:
        if self.n > self._printed:
            self._emit(time.perf_counter())

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Disabled:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _Disabled:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_description(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(
    total: int | None,
    desc: str = "",
    unit: str = "it",
    *,
    enabled: bool = True,
    leave: bool = True,
    initial: int = 0,
    fraction: float | None = 0.1,
    seconds: float = 60.0,
):
    """A tqdm bar on a terminal, else a :class:`LineProgress`; ``enabled=False``: nothing."""
    if not enabled:
        return _Disabled()
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(
            total=total, desc=desc or None, unit=unit, leave=leave, initial=initial,
            dynamic_ncols=True,
        )  # fmt: skip
    return LineProgress(total, desc, unit, initial, fraction, seconds)


def progress_iter(items, desc: str = "", *, enabled: bool = True, leave: bool = True, **kw):
    """Iterate over ``items`` with :func:`progress_bar` (``len(items)`` as the total)."""
    items = list(items)
    bar = progress_bar(len(items), desc, enabled=enabled, leave=leave, **kw)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()


def write(text: str) -> None:
    """Print a line without breaking a live bar (tqdm.write on a terminal)."""
    if interactive():
        from tqdm.auto import tqdm

        tqdm.write(text)
    else:
        print(text, flush=True)
