"""Building C++ extensions: a cache key naming everything a binary depends on, a build lock
that survives killed builds, and a strict mode for CI.

* Cache key (:func:`build_tag`): machine and CPU feature flags (binaries use
  ``-march=native``), Python and torch versions (torch's C++ ABI), the compiler's identity and
  version (``$CXX --version``), the compiler and linker flags, torch's location, the source
  paths and the sources' contents. Two environments never share a binary; any change
  rebuilds.
* Lock (:func:`build_lock`): torch marks a build in progress with a ``lock`` file that a
  killed build leaves behind, after which every later process waits for it forever. We hold
  an ``flock`` (released by the kernel when its owner dies) around torch's build; holding it,
  a ``lock`` file can only be left over from a dead build, and is removed. Waiting for a live
  builder ends after ``EQUIPOT_KERNEL_BUILD_TIMEOUT`` seconds (default 900) with a message.
* ``EQUIPOT_REQUIRE_KERNELS=1`` turns "kernels unavailable, using the PyTorch fallback"
  into an error (``.ci/run`` sets it, so CI fails when the kernels do not build).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch

from equipot.persist import LockTimeout, exclusive_lock

REQUIRE_ENV = "EQUIPOT_REQUIRE_KERNELS"
TIMEOUT_ENV = "EQUIPOT_KERNEL_BUILD_TIMEOUT"
DEFAULT_TIMEOUT_S = 900.0


class KernelsUnavailable(RuntimeError):
    """The C++ kernels could not be built or loaded (raised in strict mode)."""


def require_kernels() -> bool:
    return os.environ.get(REQUIRE_ENV, "0") not in ("", "0")


def build_timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise KernelsUnavailable(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def compiler_identity() -> str:
    """First line of ``$CXX --version`` (torch builds with ``$CXX``, default ``c++``)."""
    cxx = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        first = (out.stdout or out.stderr).strip().splitlines()
        return f"{cxx}: {first[0] if first else 'no version'}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cxx}: unavailable ({type(exc).__name__})"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


def build_tag(
    sources: list[Path], headers: list[Path], cflags: list[str], ldflags: list[str]
) -> str:
    """12 hex digits identifying the binary these inputs produce (see the module docstring)."""
    parts = [
        platform.machine(),
        _cpu_flags(),
        sys.version,
        torch.__version__,
        str(getattr(torch.version, "git_version", "")),
        compiler_identity(),
        " ".join(cflags),
        " ".join(ldflags),
        # torch's headers/libraries and the source paths are in the ninja commands: two
        # checkouts or environments sharing one build directory would rebuild it in turn
        str(Path(torch.__file__).resolve().parent),
        *(str(p.resolve()) for p in sources),
        *(p.read_text() for p in [*sources, *headers]),
    ]
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:12]


def build_root() -> Path:
    """``$TORCH_EXTENSIONS_DIR``, else torch's default (``~/.cache/torch_extensions``)."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def build_lock(directory: Path, timeout: float | None = None):
    """Context manager: exclusive right to build in ``directory``; clears a stale torch lock."""
    return _BuildLock(Path(directory), build_timeout() if timeout is None else timeout)


class _BuildLock:
    def __init__(self, directory: Path, timeout: float):
        self.directory, self.timeout = directory, timeout
        self._lock = exclusive_lock(
            directory / "equipot-build.lock", timeout, f"the C++ kernel build in {directory}"
        )

    def __enter__(self) -> Path:
        try:
            self._lock.__enter__()
        except LockTimeout as exc:
            raise KernelsUnavailable(str(exc)) from None
        baton = self.directory / "lock"
        if baton.exists():  # we hold the flock: no live equipot build owns it
            warnings.warn(
                f"equipot: removing the stale build lock {baton} left by an interrupted build",
                RuntimeWarning,
                stacklevel=3,
            )
            baton.unlink(missing_ok=True)
        return self.directory

    def __exit__(self, *exc) -> None:
        self._lock.__exit__(*exc)


def load_extension(
    name: str,
    sources: list[Path],
    headers: list[Path],
    cflags: list[str],
    ldflags: list[str],
) -> ModuleType:
    """Build (or reuse) and import the extension ``<name>_<tag>``; raises on failure."""
    from torch.utils.cpp_extension import load

    full = f"{name}_{build_tag(sources, headers, cflags, ldflags)}"
    directory = build_root() / full
    directory.mkdir(parents=True, exist_ok=True)
    with build_lock(directory):
        return load(
            name=full,
            sources=[str(p) for p in sources],
            extra_cflags=cflags,
            extra_ldflags=ldflags,
            build_directory=str(directory),
            verbose=False,
        )


def compile_shared_library(
    target: Path, sources: list[Path], args: list[str], error: type[Exception], what: str
) -> Path:
    """Compile ``sources`` with ``$CXX`` (else g++ / c++) and ``args`` (flags, includes,
    libraries) into the shared library ``target``, through a temporary file replaced
    atomically, so a concurrent build never sees a half-written library. For the libraries
    built outside torch's extension machinery (the LAMMPS plugin, the TorchScript library)."""
    import shutil

    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise error("no C++ compiler found (install g++, or set CXX)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{target.name}.{os.getpid()}.tmp"
    command = [compiler, "-shared", *(str(p) for p in sources), *args, "-o", str(tmp)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise error(f"compiling {what} failed:\n{result.stderr[-4000:]}")
    tmp.replace(target)
    return target
