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

The file's attributes record what it was built from (source path, size, modification time,
reader options, cutoff); :func:`open_cache` rebuilds it when any of them changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from equipot.data.frames import Frame
from equipot.data.readers import DataSource, read_frames
from equipot.geometry import neighbor_list

CACHE_VERSION = 2
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
    stat = path.stat()
    return {
        "version": CACHE_VERSION,
        "source": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "reader": source.model_dump_json(exclude={"path"}),
        "cutoff": float(cutoff),
    }


def cache_path(source: DataSource, cache_dir: Path) -> Path:
    """One cache file per (source file, reader options); the cutoff is checked inside."""
    tag = json.dumps([str(source.path.resolve()), source.model_dump_json(exclude={"path"})])
    digest = hashlib.sha1(tag.encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{source.path.stem}-{digest}.h5"


def open_cache(source: DataSource, cutoff: float, cache_dir: Path, verbose: bool = False) -> Path:
    """Path of an up-to-date cache of ``source`` with edges within ``cutoff``; built if needed."""
    if not source.path.is_file():
        raise FileNotFoundError(f"data file not found: {source.path}")
    path = cache_path(source, cache_dir)
    key = cache_key(source, cutoff)
    if path.is_file() and read_key(path) == key:
        return path
    if verbose:
        print(f"preprocessing {source.path} (neighbour lists, r < {cutoff} Å) → {path}")
    build_cache(read_frames(source), cutoff, path, key, source.labels)
    return path


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
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    labels = labels or {}
    layout = PER_ATOM | PER_EDGE | PER_FRAME | label_layout(labels)
    with h5py.File(tmp, "w") as f:
        for name, (shape, dtype) in layout.items():
            f.create_dataset(name, (0, *shape), dtype=dtype, maxshape=(None, *shape), chunks=True)
        buffers: dict[str, list] = {name: [] for name in layout}
        atom_counts, edge_counts, buffered = [], [], 0
        types: dict[str, int] = {}
        for frame in frames:
            i, j, shifts = neighbor_list(frame.positions, frame.cell, frame.pbc, cutoff)
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
            raise ValueError(f"{key.get('source', path)}: the file holds no structures")
        f["atom_ptr"] = np.concatenate([[0], np.cumsum(atom_counts)]).astype(np.int64)
        f["edge_ptr"] = np.concatenate([[0], np.cumsum(edge_counts)]).astype(np.int64)
        f.attrs["key"] = json.dumps(key)
        f.attrs["config_types"] = json.dumps(list(types))
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache behind
    return path


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
