"""Process-level performance settings that equipot's entry points apply (opt-out possible).

glibc serves allocations above its mmap threshold (128 kB rising to at most 32 MB) with fresh
``mmap`` pages and returns them on free, so every large temporary tensor of a force
evaluation pays page faults again on the next call — measured here as ~30 % of the time of a
2,048-atom evaluation. Raising the threshold and keeping freed memory in the heap lets those
buffers be reused. This only changes when memory is handed back to the OS, never results.
Set ``EQUIPOT_TUNE_MALLOC=0`` to leave the allocator alone.

The price of a heap that is never trimmed is that its free space only grows: the buffers of
consecutive steps come in slightly different sizes (the neighbour count changes), freed
chunks fragment, and the heap extends by the 64 MB top pad again and again (with the
reference cycles of written trajectory frames, sim/trajectory.py, a 1,008-atom MD run gained
12 % resident memory over its first 50,000 steps). Long loops therefore call
:func:`release_free_memory` now and then (every 1,000 MD steps): one ``malloc_trim``, after
which the next step faults its buffers in once more.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_tuned = False
_libc = None


def _glibc():
    """glibc through ctypes, or None (macOS, musl, Windows)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
        except OSError:
            libc = None
        _libc = libc if libc is not None and hasattr(libc, "malloc_trim") else False
    return _libc or None


def tune_allocator() -> bool:
    """Apply the allocator settings once per process; returns whether they are in effect."""
    global _tuned
    if _tuned:
        return True
    if os.environ.get("EQUIPOT_TUNE_MALLOC", "1") == "0":
        return False
    libc = _glibc()
    if libc is None:  # not glibc (macOS, musl): nothing to tune
        return False
    mallopt = libc.mallopt
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024) == 1
    ok &= mallopt(_M_TOP_PAD, 64 * 1024 * 1024) == 1
    _tuned = bool(ok)
    return _tuned


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim``); returns whether
    anything was released. Results never change; a no-op where the C library is not glibc."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
