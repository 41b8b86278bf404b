"""Training on tensor labels (dipoles, polarisabilities, Born charges, any head).

* which labels a run reads: one per head (weight ``loss.label_weights[name]``, default 1),
  ``bec`` for ∂μ/∂r of a dipole head when the model has no ``bec`` head (default 0), and
  for long-range models ``charges`` (q_i) and ``dipole`` (μ = Σ_i q_i r_i, open systems)
  of the model's own charges (default 0: the charges are learned from energies and forces);
* ``prepare`` reads them with the data (:func:`with_labels`) and stops when a label with a
  positive weight is in no training frame (:func:`check_present`), naming the file, the key
  and the keys the file does have;
* before the first step the heads' input gains and output scales are set from the data
  (:func:`initialise_heads`): backbone features of unit RMS, outputs of the labels' size.
"""

from __future__ import annotations

import numpy as np
import torch

from equipot.data.dataset import GraphDataset
from equipot.data.labels import LONG_RANGE_LABELS, LabelField, labels_for_model
from equipot.data.readers import DataSource
from equipot.model.config import ModelConfig


def charge_labels(model: ModelConfig) -> list[str]:
    """Labels of a long-range model's charges that no head of the same name takes over."""
    if model.long_range is None:
        return []
    return [name for name in LONG_RANGE_LABELS if name not in model.heads]


def label_weights(model: ModelConfig, weights: dict[str, float]) -> dict[str, float]:
    """Loss weight of every label the run trains on (zero weights dropped)."""
    derived = "dipole" in model.heads and "bec" not in model.heads
    known = set(model.heads) | ({"bec"} if derived else set()) | set(charge_labels(model))
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(
            f"loss.label_weights names {unknown}, which are not heads of the model "
            f"(heads: {sorted(model.heads) or 'none'}; 'bec' also trains ∂μ/∂r of a dipole head; "
            "'charges' and 'dipole' train the charges of a model with long_range)"
        )
    resolved = {name: float(weights.get(name, 1.0)) for name in model.heads}
    if derived and weights.get("bec", 0.0):
        resolved["bec"] = float(weights["bec"])
    for name in charge_labels(model):
        resolved[name] = float(weights.get(name, 0.0))
    return {name: w for name, w in resolved.items() if w > 0}


def derived_born_charges(model: ModelConfig, weights: dict[str, float]) -> bool:
    """Whether the loss needs ∂μ/∂r (Born charges of the dipole head) every step."""
    return "bec" in weights and "bec" not in model.heads


def with_labels(source: DataSource, model: ModelConfig, weights: dict[str, float]) -> DataSource:
    """``source`` reading the labels the model's heads take (keys / units from the user)."""
    fields = labels_for_model(model.heads, weights.get("bec", 0.0))
    fields |= {n: LONG_RANGE_LABELS[n] for n in charge_labels(model) if weights.get(n, 0.0) > 0}
    merged = {}
    for name, spec in fields.items():
        user = source.labels.get(name) or LabelField()
        merged[name] = spec.model_copy(update={"key": user.key, "unit": user.unit})
    stray = sorted(set(source.labels) - set(fields))
    if stray:
        raise ValueError(
            f"{source.path}: labels {stray} configured, but no head of the model takes them"
        )
    return source.model_copy(update={"labels": merged})


def check_present(dataset: GraphDataset, source: DataSource, weights: dict[str, float]) -> None:
    """A label with a positive weight must be in at least one training frame."""
    for name, weight in weights.items():
        if weight <= 0 or name not in source.labels:
            continue
        has = dataset.frame_arrays([f"has_label_{name}"])[f"has_label_{name}"]
        if has.any():
            continue
        key = source.labels[name].file_key(name)
        raise ValueError(
            f"{source.path}: loss.label_weights.{name} = {weight} but no frame has {key!r} "
            f"(keys in the first frame: {', '.join(_keys_of(source)) or 'none'}); "
            f"set data.train.labels.{name}.key or the weight to 0"
        )


def _keys_of(source: DataSource) -> list[str]:
    try:
        from ase.io import read

        atoms = read(str(source.path), index=0)
    except Exception:  # not every format can be read this way: best effort
        return []
    results = getattr(atoms.calc, "results", None) or {}
    return sorted(set(atoms.info) | set(atoms.arrays) | set(results))


def dataset_labels(dataset: GraphDataset) -> list[str]:
    """Names of the tensor labels stored with a data set."""
    return sorted(
        k.removeprefix("has_label_") for k in dataset.arrays if k.startswith("has_label_")
    )


def label_meta(dataset: GraphDataset, weights: dict[str, float]) -> dict[str, tuple]:
    """name → (has (F,), per atom?, components per row) for :class:`Normalisation`."""
    out = {}
    for name in weights:
        key = f"has_label_{name}"
        arrays = dataset.frame_arrays([key])
        per_atom = f"atom_label_{name}" in dataset.arrays
        width = dataset.arrays[f"{'atom' if per_atom else 'frame'}_label_{name}"].shape[1]
        out[name] = (arrays[key], per_atom, width)
    return out


def head_scales(dataset: GraphDataset, model: ModelConfig, weights: dict[str, float]) -> dict:
    """Output scale per head from its labels (heads whose ``scale`` the user did not set):
    the RMS label component per atom — for per-system sums RMS / √(mean atom count), for a
    dipole trained only on Born charges RMS(Z*)·1 Å."""
    scales = {}
    natoms = dataset.num_atoms()
    for name, head in model.heads.items():
        if "scale" in head.model_fields_set:
            continue
        label = name if name in weights else ("bec" if name == "dipole" else None)
        if label not in weights:
            continue
        per_atom = f"atom_label_{label}" in dataset.arrays
        key = f"{'atom' if per_atom else 'frame'}_label_{label}"
        arrays = dataset.frame_arrays([key, f"has_label_{label}"])
        has = arrays[f"has_label_{label}"]
        values = arrays[key] if not per_atom else arrays[key][np.repeat(has, natoms)]
        values = values[has] if not per_atom else values
        if values.size == 0:
            continue
        rms = float(np.sqrt(np.mean(np.square(values))))
        if not per_atom and head.per == "system" and head.reduce == "sum":
            rms /= np.sqrt(max(float(natoms[has].mean()), 1.0))
        scales[name] = rms if rms > 0 else 1.0
    return scales


@torch.no_grad()
def initialise_heads(net: torch.nn.Module, dataset: GraphDataset, dtype: torch.dtype) -> None:
    """Before the first step: input gains from the backbone features of a sample of
    training frames, and the per-element offsets of the heads' scalar parts from a linear fit
    to the labels (:func:`fit_offsets`) — like E0 for the energy."""
    heads = getattr(net, "heads", None)
    if heads is None or len(dataset) == 0:
        return
    sample = np.arange(min(len(dataset), 500))
    batch = dataset.batch(sample, dtype)
    _, features = net.local_energies(batch.graph)
    heads.normalise_inputs(features)
    for name, head in heads.heads.items():
        offsets = fit_offsets(name, head, batch)
        if offsets is None:
            continue
        target = head.charges if head.charges is not None else head.bias[:, 0]
        target.copy_(torch.as_tensor(offsets / head.config.scale, dtype=target.dtype))


def fit_offsets(name: str, head, batch) -> np.ndarray | None:
    """Per-element values (E,) of a head's first scalar output fitted to the labels:

    * dipole with charges: fixed charges q_z from μ_s = Σ_i q_z(i) (r_i − r̄_s) (neutral by
      construction), or from the Born charges' traces, Z*_i ≈ q_z(i)·1;
    * isotropic part of a rank-2 head: per-element a_z from tr T / 3 (summed over the atoms
      of a system for per-system heads, per atom for per-atom heads).

    Returned in the head's output units (before its scale); None where nothing applies.
    """
    graph = batch.graph
    species = head_species(head, graph)
    num_elements = len(head.atomic_numbers)
    onehot = np.eye(num_elements)[species]  # (N, E)
    system = graph.batch.numpy()
    positions = graph.positions.double().numpy()
    if head.config.charges:
        centred = positions - _means(positions, system)[system]
        if name in batch.labels:
            has = batch.has_labels[name].numpy()
            design = np.zeros((graph.num_systems, 3, num_elements))
            np.add.at(design, system, centred[:, :, None] * onehot[:, None, :])
            target = batch.labels[name].numpy()[has].reshape(-1)
            return _lstsq(design[has].reshape(-1, num_elements), target)
        if "bec" in batch.labels:
            mask = batch.has_labels["bec"].numpy()[system]
            trace = batch.labels["bec"].numpy().reshape(-1, 3, 3).trace(axis1=1, axis2=2) / 3
            return _lstsq(onehot[mask], trace[mask])
        return None
    if head.rank != 2 or (0, 1) not in head.irreps or name not in batch.labels:
        return None
    copy = head.irreps.index((0, 1))
    row = sum(2 * L + 1 for L, _ in head.irreps[:copy])
    unit = head.constants.array("q")[row].reshape(3, 3)[0, 0]  # T of a unit 0e component
    trace = batch.labels[name].numpy().reshape(-1, 3, 3).trace(axis1=1, axis2=2) / 3
    has = batch.has_labels[name].numpy()
    if head.config.per == "atom":
        mask = has[system]
        return _lstsq(onehot[mask], trace[mask]) / unit
    counts = np.zeros((graph.num_systems, num_elements))
    np.add.at(counts, system, onehot)
    if head.config.reduce == "mean":
        counts /= counts.sum(1, keepdims=True)
    return _lstsq(counts[has], trace[has]) / unit


def head_species(head, graph) -> np.ndarray:
    z = graph.atomic_numbers.numpy()
    table = np.full(119, -1)
    table[head.atomic_numbers] = np.arange(len(head.atomic_numbers))
    return table[z]


def _means(positions: np.ndarray, system: np.ndarray) -> np.ndarray:
    counts = np.bincount(system)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, system, positions)
    return sums / counts[:, None]


def _lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    if design.size == 0:
        return None
    ridge = 1e-8 * max(float(np.abs(design).max()), 1.0)
    a = design.T @ design + ridge * np.eye(design.shape[1])
    return np.linalg.solve(a, design.T @ target)
