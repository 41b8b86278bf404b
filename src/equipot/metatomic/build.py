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

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

_KERNELS = Path(__file__).parent.parent / "kernels"
_SOURCES = [_KERNELS / "engine_library.cpp"]
_HEADERS = [
    _KERNELS / n for n in ("engine_op.h", "engine_tensors.h", "engine.h", "tp_sc.h", "zbl.h")
]
LIBRARY_NAME = "libequipot_metatomic.so"


class BuildError(RuntimeError):
    """The library could not be compiled (no compiler, or the compiler failed)."""


def _key(flags: list[str]) -> str:
    import torch

    digest = hashlib.sha1()
    for path in _SOURCES + _HEADERS:
        digest.update(path.read_bytes())
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    for part in (torch.__version__, platform.machine(), cpu, *flags):
        digest.update(part.encode())
    return digest.hexdigest()[:12]


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

    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise BuildError("no C++ compiler found (install g++, or set CXX)")
    torch_lib = Path(cpp_extension.library_paths()[0])
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-march=native")
    out_dir = library_root() / _key(flags)
    library = out_dir / LIBRARY_NAME
    if library.is_file() and not force:
        return library
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"{LIBRARY_NAME}.{os.getpid()}.tmp"
    command = [
        compiler,
        *flags,
        "-shared",
        *(str(p) for p in _SOURCES),
        f"-I{_KERNELS}",
        *(f"-I{p}" for p in cpp_extension.include_paths()),
        f"-L{torch_lib}",
        f"-Wl,-rpath,{torch_lib}",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
        "-o",
        str(tmp),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(
            f"compiling equipot's TorchScript library failed:\n{result.stderr[-4000:]}"
        )
    tmp.replace(library)  # atomic: a concurrent build never sees a half-written library
    return library
