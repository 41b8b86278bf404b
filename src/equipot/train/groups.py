"""Errors per group of frames and the worst group ("fairness" across sub-populations).

Groups: ``config_type`` (stored with every frame), ``element`` (force components of that
element's atoms; energies of the frames that contain it) or any per-frame ``info`` key of an
extended-XYZ file / key-value pair of an ASE database (``molecule``, ``temperature``,
``source``...). For every group: MAE / RMSE of the energy, the energy per atom and the force
components, and the number of frames; then the worst group by force MAE (energy-per-atom
MAE where there are no forces)::

    groups = {"config_type": {"md": {...}, "relaxed": {...}, "worst": {"group": "md", ...}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols


@dataclass
class FrameErrors:
    """Per-frame and per-atom errors, collected batch by batch (``add(pred, batch)``)."""

    frames: list = field(default_factory=list)  # dataset frame index per system
    energy: list = field(default_factory=list)  # E_pred − E_ref, eV
    n_atoms: list = field(default_factory=list)
    atom_frame: list = field(default_factory=list)  # frame index of every atom with forces
    atom_z: list = field(default_factory=list)
    force_errors: list = field(default_factory=list)  # (n, 3) eV/Å

    def add(self, pred, batch) -> None:
        frames = np.asarray(batch.frames)
        self.frames.append(frames)
        self.energy.append((pred.energy - batch.energy).detach().double().numpy())
        self.n_atoms.append(batch.graph.n_atoms.numpy())
        if pred.forces is not None:
            mask = batch.atom_has_forces.numpy()
            self.atom_frame.append(frames[batch.graph.batch.numpy()[mask]])
            self.atom_z.append(batch.graph.atomic_numbers.numpy()[mask])
            self.force_errors.append((pred.forces - batch.forces).detach().double().numpy()[mask])

    def arrays(self) -> dict[str, np.ndarray]:
        def cat(parts, shape=(0,)):
            return np.concatenate(parts) if parts else np.zeros(shape)

        return {
            "frames": cat(self.frames).astype(np.int64),
            "energy": cat(self.energy),
            "n_atoms": cat(self.n_atoms),
            "atom_frame": cat(self.atom_frame).astype(np.int64),
            "atom_z": cat(self.atom_z).astype(np.int64),
            "forces": cat(self.force_errors, (0, 3)),
        }


def _errors(e: np.ndarray) -> tuple[float, float]:
    return float(np.abs(e).mean()), float(np.sqrt(np.mean(e**2)))


def _group_entry(a: dict, frame_mask: np.ndarray, atom_mask: np.ndarray) -> dict:
    entry: dict = {"num_frames": int(frame_mask.sum())}
    if frame_mask.any():
        entry["energy_mae"], entry["energy_rmse"] = _errors(a["energy"][frame_mask])
        per_atom = a["energy"][frame_mask] / a["n_atoms"][frame_mask]
        entry["energy_per_atom_mae"], entry["energy_per_atom_rmse"] = _errors(per_atom)
    if atom_mask.any():
        entry["forces_mae"], entry["forces_rmse"] = _errors(a["forces"][atom_mask])
        entry["num_force_components"] = int(3 * atom_mask.sum())
    return entry


def group_metrics(errors: FrameErrors, labels: dict[str, np.ndarray | None]) -> dict:
    """Metrics per group for each grouping; ``labels[key]`` holds one label per dataset
    frame (indexed by the frame index), ``None`` for the per-atom ``element`` grouping."""
    a = errors.arrays()
    position = {int(f): k for k, f in enumerate(a["frames"])}
    atom_pos = np.array([position[int(f)] for f in a["atom_frame"]], dtype=np.int64)
    out = {}
    for key, per_frame in labels.items():
        groups = {}
        if key == "element":
            for z in np.unique(a["atom_z"]):
                has = np.zeros(len(a["frames"]), dtype=bool)
                has[atom_pos[a["atom_z"] == z]] = True
                groups[chemical_symbols[z]] = _group_entry(a, has, a["atom_z"] == z)
        else:
            frame_labels = np.asarray([str(per_frame[f]) for f in a["frames"]])
            for label in sorted(set(frame_labels)):
                in_group = frame_labels == label
                groups[label] = _group_entry(a, in_group, in_group[atom_pos])
        groups["worst"] = worst_group(groups)
        out[key] = groups
    return out


def worst_group(groups: dict) -> dict:
    """The group with the largest force MAE (energy-per-atom MAE without forces)."""
    entries = {k: v for k, v in groups.items() if k != "worst"}
    by = "forces_mae" if any("forces_mae" in v for v in entries.values()) else "energy_per_atom_mae"
    name = max(entries, key=lambda k: entries[k].get(by, -np.inf))
    return {"group": name, "by": by, by: entries[name].get(by)}


def info_labels(source, key: str) -> np.ndarray:
    """One label per frame of a data file: ``info[key]`` (extxyz) or the row's key-value
    pair (ASE db); frames without it are labelled "none"."""
    fmt = source.resolved_format()
    path = Path(source.path)
    if fmt == "extxyz":
        from ase.io import iread

        return np.array([str(a.info.get(key, "none")) for a in iread(str(path), index=":")])
    if fmt == "ase-db":
        import ase.db

        with ase.db.connect(str(path)) as db:
            return np.array([str(r.key_value_pairs.get(key, "none")) for r in db.select()])
    raise ValueError(f"{path}: {fmt} files have no per-frame keys to group by ({key!r})")


def evaluate_groups(model, source, group_by: list[str], *, batch_size: int = 32, dtype=None):
    """Overall metrics, parity arrays and group metrics of ``model`` on a data file."""
    import tempfile

    import torch

    from equipot.data.cache import open_cache
    from equipot.data.dataset import GraphDataset
    from equipot.data.statistics import check_dataset_elements
    from equipot.train.evaluate import ParityData, coverage_notes, evaluate_dataset

    dtype = dtype or torch.float64
    with tempfile.TemporaryDirectory(prefix="equipot-eval-") as tmp:
        path = open_cache(source, model.config.r_max, Path(tmp))
        dataset = GraphDataset(path, in_memory=None, name=str(source.path))
        check_dataset_elements(dataset, model.config.elements)
        parity, errors = ParityData(), FrameErrors()
        tee = _Tee(parity, errors)
        acc = evaluate_dataset(model, dataset, batch_size=batch_size, dtype=dtype, parity=tee)
        types = np.array(dataset.config_types)[dataset.frame_arrays(["config_type"])["config_type"]]
        coverage, notes = coverage_notes(source, dataset)
        dataset.close()
    labels = {}
    for key in group_by:
        if key == "element":
            labels[key] = None
        elif key == "config_type":
            labels[key] = types
        else:
            labels[key] = info_labels(source, key)
    metrics = acc.results() | {"coverage": coverage, "notes": notes}
    return metrics, parity.arrays(), group_metrics(errors, labels)


class _Tee:
    def __init__(self, *collectors):
        self.collectors = collectors

    def add(self, pred, batch) -> None:
        for c in self.collectors:
            c.add(pred, batch)


def group_table(groups: dict) -> str:
    """Plain-text tables (meV, meV/atom, meV/Å) of :func:`group_metrics` output."""
    lines = []
    for key, entries in groups.items():
        lines.append(f"errors by {key}:")
        lines.append(f"  {'group':<28}{'frames':>7}{'E/atom MAE':>12}{'F MAE':>10}{'F RMSE':>10}")
        for name, e in entries.items():
            if name == "worst":
                continue
            lines.append(
                f"  {name[:27]:<28}{e['num_frames']:>7}"
                f"{1e3 * e.get('energy_per_atom_mae', np.nan):>12.4g}"
                f"{1e3 * e.get('forces_mae', np.nan):>10.4g}"
                f"{1e3 * e.get('forces_rmse', np.nan):>10.4g}"
            )
        w = entries["worst"]
        lines.append(f"  worst group: {w['group']} ({w['by']} {1e3 * w[w['by']]:.4g} meV)")
    return "\n".join(lines)
