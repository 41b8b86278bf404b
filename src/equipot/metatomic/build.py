"""Compile equipot's TorchScript engine library (``kernels/engine_library.cpp``) on this machine.

Against the libtorch inside the installed torch wheel only (no Python, no pybind11), so that the
library can be loaded by ``torch.ops.load_library`` in any process that has libtorch: metatomic
copies it beside an exported model and the engines that read metatomic files load it from
there. Built once per machine, keyed by the sources, torch and the CPU, under
``<sys.prefix>/lib/equipot-metatomic/``: metatomic records a collected library by its path
relative to the Python prefix, which is what lets a host find it in the extensions directory.
Where the prefix is read-only, under ``~/.cache/equipot/metatomic`` (``EQUIPOT_CACHE``
overrides); the export then refuses to collect it (see :func:`library_root`).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

_KERNELS = Path(__file__).parent.parent / "kernels"
_SOURCES = [_KERNELS / "engine_library.cpp"]
_HEADERS = [
    _KERNELS / n
    for n in ("engine_op.h", "engine_tensors.h", "engine.h", "tp_sc.h", "zbl.h", "radial_floor.h")
]
LIBRARY_NAME = "libequipot_metatomic.so"


class BuildError(RuntimeError):
    """The library could not be compiled (no compiler, or the compiler failed)."""


def library_root() -> Path:
    """Where the library is built: inside the Python prefix if it is writable."""
    prefix = Path(sys.prefix) / "lib" / "equipot-metatomic"
    try:
        prefix.mkdir(parents=True, exist_ok=True)
        if os.access(prefix, os.W_OK):
            return prefix
    except OSError:
        pass
    root = os.environ.get("EQUIPOT_CACHE") or Path.home() / ".cache" / "equipot"
    return Path(root) / "metatomic"


def build_library(*, force: bool = False) -> Path:
    """Compile the library (once per machine and version; cached) and return its path."""
    import torch
    from torch.utils import cpp_extension

    from equipot.kernels.build import build_tag, compile_shared_library

    torch_lib = Path(cpp_extension.library_paths()[0])
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-march=native")
    libs = [f"-L{torch_lib}", f"-Wl,-rpath,{torch_lib}", "-ltorch", "-ltorch_cpu", "-lc10"]
    library = library_root() / build_tag(_SOURCES, _HEADERS, flags, libs) / LIBRARY_NAME
    if library.is_file() and not force:
        return library
    includes = [f"-I{_KERNELS}", *(f"-I{p}" for p in cpp_extension.include_paths())]
    return compile_shared_library(
        library, _SOURCES, [*flags, *includes, *libs], BuildError, "equipot's TorchScript library"
    )
