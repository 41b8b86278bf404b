"""Fused CPU kernels, compiled on first use (needs a C++ compiler; cached afterwards).

:func:`cpu_kernels` returns the compiled module, or ``None`` when kernels are disabled
(``EQUIPOT_KERNELS=0``), not applicable (tensors not on the CPU) or cannot be built — callers
then use the PyTorch reference implementation, which gives the same numbers, and a warning
says so. With ``EQUIPOT_REQUIRE_KERNELS=1`` (set by CI) a build failure raises instead.
Build cache key, lock and strict mode: :mod:`equipot.kernels.build`.
"""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path
from types import ModuleType

import torch

from equipot.kernels.build import KernelsUnavailable, load_extension, require_kernels

_HERE = Path(__file__).parent
_SOURCES = [
    _HERE / "cpu_kernels.cpp",
    _HERE / "inference.cpp",
    _HERE / "pair_terms.cpp",
    _HERE / "training.cpp",
    _HERE / "uq_scores.cpp",
]
_HEADERS = [
    _HERE / "tp_sc.h",
    _HERE / "engine.h",
    _HERE / "engine_tensors.h",
    _HERE / "zbl.h",
    _HERE / "radial_floor.h",
    _HERE / "second_order.h",
    _HERE / "edge_geometry.h",
]
_state: dict[str, ModuleType | Exception | None] = {}


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


def build_flags() -> tuple[list[str], list[str]]:
    """(compiler flags, linker flags) of the kernel build."""
    flags = ["-O3", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-march=native")
    return flags, ["-fopenmp"]


def cpu_kernels() -> ModuleType | None:
    """The compiled kernel module (built once per machine), or None if unavailable."""
    if not kernels_enabled():
        if require_kernels():
            raise KernelsUnavailable(
                "EQUIPOT_REQUIRE_KERNELS=1 but EQUIPOT_KERNELS=0 switches the kernels off"
            )
        return None
    if "module" not in _state:
        try:
            _put_ninja_on_path()
            cflags, ldflags = build_flags()
            _state["module"] = load_extension("equipot_cpu", _SOURCES, _HEADERS, cflags, ldflags)
        except Exception as exc:  # no compiler, no ninja, unsupported platform, lock timeout
            _state["module"] = exc
            if not require_kernels():
                warnings.warn(
                    f"equipot: fused CPU kernels unavailable ({type(exc).__name__}: {exc}); "
                    "using the (slower) PyTorch implementation",
                    RuntimeWarning,
                    stacklevel=2,
                )
    module = _state["module"]
    if isinstance(module, Exception):
        if require_kernels():
            raise KernelsUnavailable(
                f"EQUIPOT_REQUIRE_KERNELS=1 and the fused CPU kernels are unavailable "
                f"({type(module).__name__}: {module})"
            ) from module
        return None
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
