"""Fused CPU kernels, compiled on first use (needs a C++ compiler; cached afterwards).

:func:`cpu_kernels` returns the compiled module, or ``None`` when kernels are disabled
(``EQUIPOT_KERNELS=0``), not applicable (tensors not on the CPU) or cannot be built — callers
then use the PyTorch reference implementation, which gives the same numbers.
"""

from __future__ import annotations

import hashlib
import os
import platform
import warnings
from pathlib import Path
from types import ModuleType

import torch

_HERE = Path(__file__).parent
_SOURCES = [_HERE / "cpu_kernels.cpp", _HERE / "inference.cpp"]
_HEADERS = [_HERE / "tp_sc.h", _HERE / "engine.h", _HERE / "engine_tensors.h"]
_state: dict[str, ModuleType | None] = {}


def _cpu_tag() -> str:
    """Kernels are built with -march=native: key the build by machine and CPU features."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    code = "".join(p.read_text() for p in _SOURCES + _HEADERS)
    digest = hashlib.sha1((platform.machine() + flags + code).encode())
    return digest.hexdigest()[:12]


def _put_ninja_on_path() -> None:
    """torch builds extensions with the ``ninja`` executable; the pip package ships one that is
    on PATH only inside an activated environment (not for ``.venv/bin/equipot``)."""
    try:
        import ninja
    except ImportError:
        return
    path = os.environ.get("PATH", "")
    if ninja.BIN_DIR not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, path]) if path else ninja.BIN_DIR


def kernels_enabled() -> bool:
    return os.environ.get("EQUIPOT_KERNELS", "1") != "0"


def cpu_kernels() -> ModuleType | None:
    """The compiled kernel module (built once per machine), or None if unavailable."""
    if not kernels_enabled():
        return None
    if "module" in _state:
        return _state["module"]
    module = None
    try:
        from torch.utils.cpp_extension import load

        _put_ninja_on_path()

        flags = ["-O3", "-fopenmp"]
        if platform.machine() in ("x86_64", "AMD64"):
            flags.append("-march=native")
        module = load(
            name=f"equipot_cpu_{_cpu_tag()}",
            sources=[str(p) for p in _SOURCES],
            extra_cflags=flags,
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # no compiler, no ninja, unsupported platform, ...
        warnings.warn(
            f"equipot: fused CPU kernels unavailable ({type(exc).__name__}: {exc}); "
            "using the (slower) PyTorch implementation",
            RuntimeWarning,
            stacklevel=2,
        )
    _state["module"] = module
    return module


def is_batched(tensor: torch.Tensor) -> bool:
    """True for tensors without storage, such as the batched gradients that
    ``autograd.grad(..., is_grads_batched=True)`` feeds to backward functions: the kernels
    need real memory, so such calls take the PyTorch reference path."""
    try:
        tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return True
    return False
