"""Errors of a model on a data set (MAE / RMSE of energies, forces, stresses)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from equipot.calculator import frozen_copy
from equipot.data.dataset import GraphDataset
from equipot.model.energy_model import EnergyModel
from equipot.physics.derivatives import predict
from equipot.train.distributed import Comm
from equipot.train.labels import charge_labels, dataset_labels, label_meta, with_labels
from equipot.train.loss import LossFunction, Normalisation, loss_terms
from equipot.train.metrics import ErrorAccumulator


@dataclass
class ParityData:
    """Reference and predicted values for parity plots."""

    energy_per_atom: list = field(default_factory=lambda: [[], []])  # [reference, predicted]
    forces: list = field(default_factory=lambda: [[], []])
    force_elements: list = field(default_factory=list)

    def add(self, pred, batch) -> None:
        n = batch.graph.n_atoms.double()
        self.energy_per_atom[0].append((batch.energy / n).double().numpy())
        self.energy_per_atom[1].append((pred.energy.detach() / n).double().numpy())
        if pred.forces is not None:
            mask = batch.atom_has_forces
            self.forces[0].append(batch.forces[mask].double().numpy().ravel())
            self.forces[1].append(pred.forces.detach()[mask].double().numpy().ravel())
            z = batch.graph.atomic_numbers[mask].numpy()
            self.force_elements.append(np.repeat(z, 3))

    def arrays(self) -> dict[str, np.ndarray]:
        def cat(parts):
            return np.concatenate(parts) if parts else np.zeros(0)

        return {
            "energy_ref": cat(self.energy_per_atom[0]),
            "energy_pred": cat(self.energy_per_atom[1]),
            "forces_ref": cat(self.forces[0]),
            "forces_pred": cat(self.forces[1]),
            "forces_z": cat(self.force_elements).astype(np.int64),
        }


def evaluate_dataset(
    model: EnergyModel,
    dataset: GraphDataset,
    *,
    batch_size: int = 32,
    dtype: torch.dtype | None = None,
    energy_reference: np.ndarray | None = None,
    stress: bool | None = None,
    comm: Comm | None = None,
    parity: ParityData | None = None,
    frozen: bool = True,
    loss: LossFunction | None = None,
    born_charges: bool | None = None,
) -> ErrorAccumulator:
    """Accumulate errors of ``model`` over ``dataset`` (sharded over processes if ``comm``).

    ``frozen`` evaluates an inference copy (fused kernels); ``energy_reference`` is the
    per-atomic-number energy subtracted from the labels (for models trained on referenced
    energies). Stresses are evaluated where the data has them (``stress=None``). With
    ``loss``, the training loss over the whole data set is accumulated too (``loss_sum``).
    Tensor labels of the data set are compared with the model's heads (``born_charges``:
    ``bec`` from ∂μ/∂r of its dipole head; default: where the data has ``bec`` and the model
    a dipole but no ``bec`` head).
    """
    comm = comm or Comm()
    dtype = dtype or model.dtype
    net = frozen_copy(model, dtype, "cpu") if frozen else model
    if stress is None:
        stress = bool(dataset.frame_arrays(["has_stress"])["has_stress"].any())
    labels = dataset_labels(dataset)
    if born_charges is None:
        heads = model.config.heads
        born_charges = "bec" in labels and "dipole" in heads and "bec" not in heads
    acc = ErrorAccumulator(labels=labels)
    if loss is not None:
        meta = dataset.frame_arrays(["has_forces", "has_stress"])
        norm = Normalisation.of(
            dataset.num_atoms(),
            meta["has_forces"],
            meta["has_stress"],
            label_meta(dataset, {n: 1.0 for n in labels}),
        )
    starts = range(comm.rank * batch_size, len(dataset), comm.world_size * batch_size)
    with torch.enable_grad():
        for start in starts:
            batch = dataset.batch(
                np.arange(start, min(start + batch_size, len(dataset))), dtype, energy_reference
            )
            pred = predict(net, batch.graph, forces=True, stress=stress)
            if labels:
                pred.outputs = predict(
                    net, batch.graph, forces=False, born_charges=born_charges
                ).outputs
            acc.update(pred, batch)
            if loss is not None:
                acc.loss_sum += float(sum(loss_terms(pred, batch, loss, norm).values()).detach())
            if parity is not None:
                parity.add(pred, batch)
    if comm.world_size > 1:
        acc.load_tensor(comm.all_reduce_(acc.as_tensor()))
    return acc


def evaluate_file(
    model: EnergyModel,
    source,
    *,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float64,
    cache_dir=None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Errors of ``model`` (a complete model, E0 included) on a data file.

    ``source`` is a :class:`~equipot.data.readers.DataSource` or a path. Returns the metrics
    (see :class:`~equipot.train.metrics.ErrorAccumulator`, plus ``coverage``: frames with
    forces / stress, and ``notes``: e.g. "no forces in FILE ...") and parity-plot arrays.
    """
    import tempfile
    from pathlib import Path

    from equipot.data.cache import open_cache
    from equipot.data.readers import DataSource
    from equipot.data.statistics import check_dataset_elements

    source = source if isinstance(source, DataSource) else DataSource(path=Path(source))
    if model.config.heads or model.config.long_range:  # the labels heads and charges predict
        weights = {"bec": 1.0} | {name: 1.0 for name in charge_labels(model.config)}
        source = with_labels(source, model.config, weights)
    with tempfile.TemporaryDirectory(prefix="equipot-eval-") as tmp:
        path = open_cache(source, model.config.r_max, Path(cache_dir or tmp))
        dataset = GraphDataset(path, in_memory=None, name=str(source.path))
        check_dataset_elements(dataset, model.config.elements)
        parity = ParityData()
        acc = evaluate_dataset(model, dataset, batch_size=batch_size, dtype=dtype, parity=parity)
        coverage, notes = coverage_notes(source, dataset)
        dataset.close()
    metrics = acc.results() | {"coverage": coverage, "notes": notes}
    return metrics, parity.arrays()


def coverage_notes(source, dataset: GraphDataset) -> tuple[dict, list[str]]:
    """Frames with forces / stress, and what to tell the user about it ("no forces in FILE
    ...", or how many frames the errors are over); stress only where cells are periodic."""
    from equipot.data.coverage import QUANTITIES, frame_coverage, missing_message

    coverage = frame_coverage(dataset)
    notes = []
    for quantity in QUANTITIES:
        if coverage[quantity] == 0:
            if quantity == "forces" or dataset.frame_arrays(["pbc"])["pbc"].all(axis=1).any():
                notes.append(missing_message(source, quantity, dataset))
        elif coverage[quantity] < coverage["frames"]:
            notes.append(
                f"{quantity} in {coverage[quantity]} of {coverage['frames']} frames of "
                f"{source.path} (the {quantity} errors are over those)"
            )
    return coverage, notes
