"""Files that survive a crash: atomic, fsynced writes and an exclusive lock between processes.

:func:`atomic_write` writes the bytes to a temporary file beside the target, flushes and
fsyncs it, renames it over the target and fsyncs the directory. Whatever moment a process is
killed at (``SIGKILL``, power loss after the fsync), the target is either the old complete
file or the new complete file, never a truncated one. Leftover temporaries are named
``<name>.<pid>.tmp`` and removed by :func:`remove_stale_temporaries`.

:func:`exclusive_lock` is an ``flock`` on a lock file: the kernel releases it when its owner
dies, so a killed process never leaves a lock that blocks the next one.

Test hook: with ``EQUIPOT_TEST_HOLD_WRITE=<marker path>`` set, the next atomic write of a
file whose name matches ``EQUIPOT_TEST_HOLD_WRITE_NAME`` (default ``checkpoint.pt``) writes
half of its bytes, creates the marker file and sleeps, so a test can kill the process in
the middle of the write deterministically.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

HOLD_ENV = "EQUIPOT_TEST_HOLD_WRITE"
HOLD_NAME_ENV = "EQUIPOT_TEST_HOLD_WRITE_NAME"


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hold_for_test(path: Path, f, data: bytes) -> bytes:
    """The test hook (see the module docstring): returns what is left to write."""
    marker = os.environ.get(HOLD_ENV)
    if not marker or path.name != os.environ.get(HOLD_NAME_ENV, "checkpoint.pt"):
        return data
    half = len(data) // 2
    f.write(data[:half])
    f.flush()
    os.environ.pop(HOLD_ENV)  # hold once per process
    Path(marker).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("EQUIPOT_TEST_HOLD_SECONDS", "60")))
    return data[half:]


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Replace ``path`` by ``data`` atomically and durably (str is written as UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            rest = _hold_for_test(path, f, data)
            f.write(rest)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)
    return path


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete ``<name>.<pid>.tmp`` files left beside ``path`` by processes that are gone."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f"{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 1 : -len(".tmp")]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class LockTimeout(TimeoutError):
    """Another live process held the lock for longer than the timeout."""


@contextlib.contextmanager
def exclusive_lock(path: str | Path, timeout: float, what: str = "") -> Iterator[Path]:
    """Hold an ``flock`` on ``path`` (created if needed); wait at most ``timeout`` seconds.

    The lock file records the owner's pid, which the timeout message names.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise LockTimeout(
                        f"waited {timeout:.0f} s for {what or path} (lock {path} held by "
                        f"process {owner}); if that process is stuck, stop it"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
