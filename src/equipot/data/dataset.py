"""Frames of an HDF5 graph cache, served as batched :class:`~equipot.graph.AtomicGraph` s.

Small caches are read into memory once; larger ones (``in_memory=False``, or automatically
above :data:`IN_MEMORY_LIMIT` bytes) stay on disk and each batch reads just its frames, so a
data set larger than memory streams. Batches are assembled with a handful of numpy slices per
frame: no neighbour search happens during training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from equipot.graph import AtomicGraph

IN_MEMORY_LIMIT = 2 * 1024**3  # bytes


@dataclass
class Batch:
    """Graphs and their reference labels (eV, eV/Å, eV/Å³)."""

    graph: AtomicGraph
    energy: Tensor  # (S,) (minus the per-element reference energies, if given)
    forces: Tensor  # (N, 3); zeros where a frame has none
    stress: Tensor  # (S, 3, 3); zeros where a frame has none
    has_forces: Tensor  # (S,) bool
    has_stress: Tensor  # (S,) bool
    weight: Tensor  # (S,) per-config loss weight (file weight × config-type weight)
    frames: np.ndarray  # (S,) frame indices in the dataset
    # tensor labels (data/labels.py): name → (S, 3^r) or (N, 3^r); has_labels: name → (S,)
    labels: dict[str, Tensor] = field(default_factory=dict)
    has_labels: dict[str, Tensor] = field(default_factory=dict)
    per_atom_labels: tuple[str, ...] = ()

    @property
    def atom_has_forces(self) -> Tensor:
        return self.has_forces[self.graph.batch]


class GraphDataset:
    """The frames ``indices`` (default: all) of the cache file ``path``."""

    def __init__(
        self, path: str | Path, indices=None, *, in_memory: bool | None = None, name: str = ""
    ):
        self.path = Path(path)
        self.name = name or self.path.name
        self._file = h5py.File(self.path, "r")
        self.cutoff = float(json.loads(self._file.attrs["key"])["cutoff"])
        self.config_types: list[str] = json.loads(self._file.attrs["config_types"])
        self.type_weights = np.ones(len(self.config_types))
        self.atom_ptr = self._file["atom_ptr"][()]
        self.edge_ptr = self._file["edge_ptr"][()]
        total = len(self.atom_ptr) - 1
        self.indices = np.arange(total) if indices is None else np.asarray(indices, np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= total):
            raise ValueError(f"{self.path}: frame indices out of range (file has {total})")
        if in_memory is None:
            in_memory = self.path.stat().st_size <= IN_MEMORY_LIMIT
        names = [k for k in self._file if k not in ("atom_ptr", "edge_ptr")]
        if in_memory:
            self.arrays = {k: self._file[k][()] for k in names}
            self._file.close()
        else:
            self.arrays = {k: self._file[k] for k in names}
        self.in_memory = in_memory

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, positions) -> GraphDataset:
        """A view with the frames at ``positions`` of this dataset (shares the arrays)."""
        view = object.__new__(GraphDataset)
        view.__dict__.update(self.__dict__)
        view.indices = self.indices[np.asarray(positions, np.int64)]
        return view

    def set_config_type_weights(self, weights: dict[str, float]) -> None:
        """Loss weight per config type (types not listed weigh 1)."""
        self.type_weights = np.array([weights.get(t, 1.0) for t in self.config_types])

    # ------------------------------------------------------------------ per-frame metadata
    def num_atoms(self) -> np.ndarray:
        """(len,) atoms per frame of this dataset."""
        return (self.atom_ptr[1:] - self.atom_ptr[:-1])[self.indices]

    def frame_arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        """Per-atom / per-edge / per-frame arrays restricted to this dataset's frames."""
        return _gather(self.arrays, self.atom_ptr, self.edge_ptr, self.indices, names)

    # ------------------------------------------------------------------ batches
    def batch(
        self,
        positions,
        dtype: torch.dtype = torch.float64,
        energy_reference: np.ndarray | None = None,
    ) -> Batch:
        """The frames at ``positions`` (into this dataset) as one :class:`Batch`.

        ``energy_reference`` (119,) eV per atomic number is subtracted from the energies in
        float64 before the cast to ``dtype``, so float32 training keeps sub-meV resolution.
        """
        frames = self.indices[np.asarray(positions, np.int64)]
        a = _gather(self.arrays, self.atom_ptr, self.edge_ptr, frames, None)
        n_atoms = self.atom_ptr[frames + 1] - self.atom_ptr[frames]
        n_edges = self.edge_ptr[frames + 1] - self.edge_ptr[frames]
        system = np.repeat(np.arange(len(frames)), n_atoms)
        offsets = np.repeat(np.cumsum(n_atoms) - n_atoms, n_edges)
        edges = a["edges"].astype(np.int64) + offsets[:, None]
        numbers = a["numbers"].astype(np.int64)
        energy = a["energy"]
        if energy_reference is not None:
            energy = energy - np.bincount(system, energy_reference[numbers], len(frames))

        def t(x, dt=dtype):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dt)

        graph = AtomicGraph(
            positions=t(a["positions"]),
            atomic_numbers=t(numbers, torch.int64),
            batch=t(system, torch.int64),
            edge_index=t(edges.T, torch.int64),
            edge_shift=t(a["shifts"]),
            cell=t(a["cell"]),
            pbc=t(a["pbc"], torch.bool),
            n_atoms=t(n_atoms, torch.int64),
            n_edges=t(n_edges, torch.int64),
            cutoff=self.cutoff,
            charge=t(a["charge"]) if "charge" in a else None,
        )
        label_names = [k.split("_label_", 1)[1] for k in a if k.startswith("has_label_")]
        return Batch(
            labels={
                n: t(a[f"atom_label_{n}"] if f"atom_label_{n}" in a else a[f"frame_label_{n}"])
                for n in label_names
            },
            has_labels={n: t(a[f"has_label_{n}"], torch.bool) for n in label_names},
            per_atom_labels=tuple(n for n in label_names if f"atom_label_{n}" in a),
            graph=graph,
            energy=t(energy),
            forces=t(a["forces"]),
            stress=t(a["stress"]),
            has_forces=t(a["has_forces"], torch.bool),
            has_stress=t(a["has_stress"], torch.bool),
            weight=t(a["weight"] * self.type_weights[a["config_type"]]),
            frames=frames,
        )

    def close(self) -> None:
        if not self.in_memory:
            self._file.close()


PER_ATOM_KEYS = ("numbers", "positions", "forces")
PER_EDGE_KEYS = ("edges", "shifts")


def _gather(arrays, atom_ptr, edge_ptr, frames: np.ndarray, names) -> dict[str, np.ndarray]:
    names = list(arrays) if names is None else names
    out = {}
    in_memory = isinstance(next(iter(arrays.values())), np.ndarray)
    for name in names:
        data = arrays[name]
        per_atom = name in PER_ATOM_KEYS or name.startswith("atom_label_")
        if per_atom or name in PER_EDGE_KEYS:
            ptr = atom_ptr if per_atom else edge_ptr
            if in_memory:
                rows = _ranges(ptr[frames], ptr[frames + 1])
                out[name] = data[rows]
            else:  # h5py: one contiguous read per frame
                out[name] = np.concatenate([data[ptr[k] : ptr[k + 1]] for k in frames])
        elif in_memory:
            out[name] = data[frames]
        else:
            order = np.argsort(frames)  # h5py wants increasing indices
            values = data[np.sort(frames).tolist()] if len(frames) else data[:0]
            out[name] = values[np.argsort(order)]
    return out


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, stop)`` for each pair, vectorised."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total) + offsets
