"""Process-level performance settings that equipot's entry points apply (opt-out possible).

glibc serves allocations above its mmap threshold (128 kB rising to at most 32 MB) with fresh
``mmap`` pages and returns them on free, so every large temporary tensor of a force
evaluation pays page faults again on the next call — measured here as ~30 % of the time of a
2,048-atom evaluation. Raising the threshold and keeping freed memory in the heap lets those
buffers be reused. This only changes when memory is handed back to the OS, never results.
Set ``EQUIPOT_TUNE_MALLOC=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_allocator() -> bool:
    """Apply the allocator settings once per process; returns whether they are in effect."""
    global _tuned
    if _tuned:
        return True
    if os.environ.get("EQUIPOT_TUNE_MALLOC", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024) == 1
    ok &= mallopt(_M_TOP_PAD, 64 * 1024 * 1024) == 1
    _tuned = bool(ok)
    return _tuned
