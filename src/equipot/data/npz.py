"""rMD17-style ``.npz`` archives read defensively: headers are checked before any array is
allocated, so a damaged or crafted file is an error naming the file and the array, never a
multi-gigabyte allocation, a pickle, a silent cast (complex → real, text → numbers) or a
traceback from deep inside numpy."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

# array name → (allowed dtype kinds, allowed numbers of dimensions, expected shape)
RMD17 = {
    "nuclear_charges": ("iu", (1,), "(atoms,)"),
    "coords": ("fiu", (3,), "(frames, atoms, 3)"),
    "energies": ("fiu", (1, 2), "(frames,)"),
    "forces": ("fiu", (3,), "(frames, atoms, 3)"),
}
REQUIRED = ("nuclear_charges", "coords", "energies")


class NpzError(ValueError):
    """A malformed ``.npz`` data file (the message names the file and the array)."""


def _header(archive: zipfile.ZipFile, member: str, path: Path, key: str):
    info = archive.getinfo(member)
    try:
        with archive.open(info) as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0
            if major >= 2:
                read = np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise NpzError(f"{path}: array {key!r} has a damaged header ({exc})") from None
    if dtype.hasobject:
        raise NpzError(f"{path}: array {key!r} holds Python objects; only numbers are read")
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size:
        raise NpzError(
            f"{path}: array {key!r} declares shape {shape} ({declared} bytes) but the archive "
            f"holds {info.file_size} bytes for it (damaged or crafted file)"
        )
    return shape, dtype


def read_rmd17_arrays(path: Path) -> dict[str, np.ndarray]:
    """The rMD17 arrays of ``path``, validated (``forces`` may be absent)."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise NpzError(f"{path}: not a readable .npz archive ({exc})") from None
    with archive:
        members = {m[:-4]: m for m in archive.namelist() if m.endswith(".npy")}
        missing = [k for k in REQUIRED if k not in members]
        if missing:
            raise NpzError(
                f"{path}: not an rMD17 file, arrays {missing} missing (it has "
                f"{sorted(members)[:20]})"
            )
        arrays = {}
        for key, (kinds, ndims, expected) in RMD17.items():
            if key not in members:
                continue
            shape, dtype = _header(archive, members[key], path, key)
            if len(shape) not in ndims:
                raise NpzError(f"{path}: array {key!r} has shape {shape}, expected {expected}")
            if dtype.kind not in kinds:
                raise NpzError(
                    f"{path}: array {key!r} has dtype {dtype}, expected "
                    + ("integers" if kinds == "iu" else "real numbers")
                )
            try:
                with archive.open(members[key]) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise NpzError(f"{path}: array {key!r} cannot be read ({exc})") from None
    return _check_shapes(arrays, path)


def _check_shapes(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    numbers, coords = arrays["nuclear_charges"], arrays["coords"]
    n_atoms, n_frames = len(numbers), len(coords)
    if coords.shape[1:] != (n_atoms, 3):
        raise NpzError(
            f"{path}: 'coords' has shape {coords.shape}, expected ({n_frames}, {n_atoms}, 3) "
            f"for the {n_atoms} atoms of 'nuclear_charges'"
        )
    energies = arrays["energies"]
    if energies.ndim == 2 and energies.shape[1] == 1:
        energies = arrays["energies"] = energies[:, 0]
    if energies.shape != (n_frames,):
        raise NpzError(
            f"{path}: 'energies' has shape {energies.shape}, expected ({n_frames},), one per "
            "frame of 'coords'"
        )
    forces = arrays.get("forces")
    if forces is not None and forces.shape != coords.shape:
        raise NpzError(
            f"{path}: 'forces' has shape {forces.shape}, expected {coords.shape} like 'coords'"
        )
    if n_frames == 0:
        raise NpzError(f"{path}: the file holds no frames")
    return arrays
