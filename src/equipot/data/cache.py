"""Preprocessed graphs on disk (HDF5): read a data file and build neighbour lists once.

Layout: per-atom, per-edge and per-frame arrays concatenated over frames, with ``atom_ptr`` /
``edge_ptr`` (F+1,) giving each frame's rows. Edge indices are local to their frame.

    numbers (A,) int16, positions (A, 3), forces (A, 3)       per atom
    edges (E, 2) int32 [i, j], shifts (E, 3) int16            per edge (sorted by i)
    cell (F, 3, 3), pbc (F, 3), energy (F,), stress (F, 3, 3),
    has_forces (F,), has_stress (F,), weight (F,), charge (F,) total charge in e,
    config_type (F,) int16 (index into the attribute ``config_types``)   per frame
    atom_label_<name> (A, 3^r) | frame_label_<name> (F, 3^r), has_label_<name> (F,)
                                           tensor labels (data/labels.py), where configured

The file's attributes record what it was built from (source path, SHA-256 of its content,
reader options, cutoff) and which per-frame / per-atom keys the source offered;
:func:`open_cache` rebuilds it when any of them changed — an edit that keeps the file's size
and modification time included. The cutoff and reader options are part of the file name, so
runs with different cutoffs keep separate caches. Building happens under an ``flock``: two
runs that need the same cache at once build it once (the second waits, then reuses it), and
the file appears by an atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from equipot.data.frames import Frame, check_neighbour_density
from equipot.data.readers import DataSource, read_frames
from equipot.geometry import neighbor_list
from equipot.geometry.edges import check_min_distance
from equipot.persist import exclusive_lock, remove_stale_temporaries

CACHE_VERSION = 4
LOCK_TIMEOUT_S = float(os.environ.get("EQUIPOT_CACHE_LOCK_TIMEOUT", 6 * 3600))
_FLUSH_ATOMS = 200_000  # write to disk every this many atoms (bounded memory while building)

PER_ATOM = {"numbers": ((), np.int16), "positions": ((3,), np.float64)}
PER_ATOM |= {"forces": ((3,), np.float64)}
PER_EDGE = {"edges": ((2,), np.int32), "shifts": ((3,), np.int16)}
PER_FRAME = {
    "cell": ((3, 3), np.float64),
    "pbc": ((3,), np.bool_),
    "energy": ((), np.float64),
    "stress": ((3, 3), np.float64),
    "has_forces": ((), np.bool_),
    "has_stress": ((), np.bool_),
    "weight": ((), np.float64),
    "config_type": ((), np.int16),
    "charge": ((), np.float64),
}


def content_hash(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def label_layout(labels: dict) -> dict:
    """Datasets of the tensor labels ``labels`` (name → LabelField)."""
    layout = {}
    for name, spec in labels.items():
        scope = "atom" if spec.per == "atom" else "frame"
        layout[f"{scope}_label_{name}"] = ((spec.size,), np.float64)
        layout[f"has_label_{name}"] = ((), np.bool_)
    return layout


def cache_key(source: DataSource, cutoff: float) -> dict:
    """Everything the cached arrays depend on."""
    path = source.path.resolve()
    return {
        "version": CACHE_VERSION,
        "source": str(path),
        "sha256": content_hash(path),
        "reader": source.model_dump_json(exclude={"path"}),
        "cutoff": float(cutoff),
    }


def cache_path(source: DataSource, cache_dir: Path, cutoff: float) -> Path:
    """One cache file per (source file, reader options, cutoff)."""
    tag = json.dumps(
        [str(source.path.resolve()), source.model_dump_json(exclude={"path"}), float(cutoff)]
    )
    digest = hashlib.sha1(tag.encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{source.path.stem}-{digest}.h5"


def open_cache(source: DataSource, cutoff: float, cache_dir: Path, verbose: bool = False) -> Path:
    """Path of an up-to-date cache of ``source`` with edges within ``cutoff``; built if needed."""
    if not source.path.is_file():
        raise FileNotFoundError(f"data file not found: {source.path}")
    path = cache_path(source, cache_dir, cutoff)
    key = cache_key(source, cutoff)
    if path.is_file() and read_key(path) == key:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with exclusive_lock(lock, LOCK_TIMEOUT_S, f"the cache {path} (another run is building it)"):
        if path.is_file() and read_key(path) == key:  # built by another run meanwhile
            return path
        if verbose:
            print(f"preprocessing {source.path} (neighbour lists, r < {cutoff} Å) → {path}")
        build_cache(read_frames(source), cutoff, path, key, source.labels)
    return path


def cache_keys(path: Path) -> dict[str, list[str]]:
    """The per-frame and per-atom keys the cached source file offered (for error messages)."""
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs.get("source_keys", '{"per_frame": [], "per_atom": []}'))


def num_frames(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return len(f["atom_ptr"]) - 1


def read_key(path: Path) -> dict | None:
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["key"])
    except (OSError, KeyError, ValueError):
        return None


def build_cache(frames, cutoff: float, path: Path, key: dict, labels: dict | None = None) -> Path:
    """Write ``frames`` (an iterable of :class:`Frame`) with their neighbour lists to ``path``;
    ``labels`` (name → LabelField) are the tensor labels to store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)  # left by killed builds
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        _write(frames, cutoff, tmp, key, labels or {})
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache behind
    return path


def _write(frames, cutoff: float, tmp: Path, key: dict, labels: dict) -> None:
    layout = PER_ATOM | PER_EDGE | PER_FRAME | label_layout(labels)
    with h5py.File(tmp, "w") as f:
        for name, (shape, dtype) in layout.items():
            f.create_dataset(name, (0, *shape), dtype=dtype, maxshape=(None, *shape), chunks=True)
        buffers: dict[str, list] = {name: [] for name in layout}
        atom_counts, edge_counts, buffered = [], [], 0
        types: dict[str, int] = {}
        keys: dict[str, set] = {"per_frame": set(), "per_atom": set()}
        for k, frame in enumerate(frames):
            where = f"{key.get('source', tmp)} frame {k}"
            check_neighbour_density(frame, cutoff, where)
            try:
                i, j, shifts = neighbor_list(frame.positions, frame.cell, frame.pbc, cutoff)
                check_min_distance(frame.positions, frame.cell, i, j, shifts)
            except ValueError as exc:  # degenerate cell, overlapping atoms
                raise ValueError(f"{where}: {exc}") from None
            keys["per_frame"].update(frame.per_frame_keys)
            keys["per_atom"].update(frame.per_atom_keys)
            _append(buffers, frame, i, j, shifts, types.setdefault(frame.config_type, len(types)))
            _append_labels(buffers, frame, labels)
            atom_counts.append(frame.num_atoms)
            edge_counts.append(len(i))
            buffered += frame.num_atoms
            if buffered >= _FLUSH_ATOMS:
                _flush(f, buffers)
                buffered = 0
        _flush(f, buffers)
        if not atom_counts:
            raise ValueError(f"{key.get('source', tmp)}: the file holds no structures")
        f["atom_ptr"] = np.concatenate([[0], np.cumsum(atom_counts)]).astype(np.int64)
        f["edge_ptr"] = np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64)
        f.attrs["key"] = json.dumps(key)
        f.attrs["config_types"] = json.dumps(list(types))
        f.attrs["source_keys"] = json.dumps({k: sorted(v) for k, v in keys.items()})


def _append(buffers: dict, frame: Frame, i, j, shifts, config_type: int) -> None:
    n = frame.num_atoms
    buffers["numbers"].append(frame.numbers)
    buffers["positions"].append(frame.positions)
    has_forces = frame.forces is not None
    buffers["forces"].append(frame.forces if has_forces else np.zeros((n, 3)))
    buffers["edges"].append(np.stack([i, j], axis=1))
    buffers["shifts"].append(shifts)
    buffers["cell"].append(frame.cell[None])
    buffers["pbc"].append(frame.pbc[None])
    buffers["energy"].append(np.array([frame.energy]))
    has_stress = frame.stress is not None
    buffers["stress"].append((frame.stress if has_stress else np.zeros((3, 3)))[None])
    buffers["has_forces"].append(np.array([has_forces]))
    buffers["has_stress"].append(np.array([has_stress]))
    buffers["weight"].append(np.array([frame.weight]))
    buffers["config_type"].append(np.array([config_type]))
    buffers["charge"].append(np.array([frame.charge]))


def _append_labels(buffers: dict, frame: Frame, labels: dict) -> None:
    for name, spec in labels.items():
        value = frame.labels.get(name)
        rows = (frame.num_atoms, spec.size) if spec.per == "atom" else (1, spec.size)
        scope = "atom" if spec.per == "atom" else "frame"
        buffers[f"{scope}_label_{name}"].append(
            np.zeros(rows) if value is None else value.reshape(rows)
        )
        buffers[f"has_label_{name}"].append(np.array([value is not None]))


def _flush(f: h5py.File, buffers: dict) -> None:
    for name, chunks in buffers.items():
        if not chunks:
            continue
        data = np.concatenate(chunks).astype(f[name].dtype, copy=False)
        dataset = f[name]
        start = dataset.shape[0]
        dataset.resize(start + len(data), axis=0)
        dataset[start:] = data
        chunks.clear()
