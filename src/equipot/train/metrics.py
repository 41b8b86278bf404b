"""Error statistics (MAE / RMSE) accumulated over batches, mergeable across processes."""

from __future__ import annotations

import numpy as np
import torch
from ase.data import chemical_symbols

from equipot.data.dataset import Batch
from equipot.physics.derivatives import Prediction

# sums of |error| and error², and counts, for each quantity
_QUANTITIES = ("energy", "energy_per_atom", "forces", "stress")


class ErrorAccumulator:
    """Running sums; ``results()`` gives MAE / RMSE in eV, eV/atom, eV/Å, eV/Å³."""

    def __init__(self, per_element: bool = True, labels=()):
        self.per_element = per_element
        self.labels = tuple(labels)  # tensor labels (train/labels.py), after the quantities
        self.quantities = _QUANTITIES + self.labels
        self.sums = np.zeros((len(self.quantities), 3))  # rows: quantity; cols: |e|, e², count
        self.element_sums = np.zeros((119, 3))  # force components by element
        self.loss_sum = 0.0  # the training loss, if the caller adds it (see evaluate_dataset)

    def update(self, pred: Prediction, batch: Batch) -> None:
        g = batch.graph
        energy_error = (pred.energy - batch.energy).detach().double()
        self._add(0, energy_error)
        self._add(1, energy_error / g.n_atoms.double())
        if pred.forces is not None:
            mask = batch.atom_has_forces
            errors = (pred.forces - batch.forces).detach().double()[mask]
            self._add(2, errors)
        if pred.forces is not None and self.per_element:
            z = g.atomic_numbers[mask].repeat_interleave(3).numpy()
            e = errors.reshape(-1).numpy()
            np.add.at(self.element_sums, (z, 0), np.abs(e))
            np.add.at(self.element_sums, (z, 1), e * e)
            np.add.at(self.element_sums, (z, 2), 1.0)
        if pred.stress is not None and bool(batch.has_stress.any()):
            self._add(3, (pred.stress - batch.stress).detach().double()[batch.has_stress])
        for row, name in enumerate(self.labels, start=len(_QUANTITIES)):
            if name not in batch.labels or name not in pred.outputs:
                continue
            reference = batch.labels[name]
            has = batch.has_labels[name]
            mask = has[g.batch] if name in batch.per_atom_labels else has
            error = pred.outputs[name].detach().reshape(reference.shape) - reference
            self._add(row, error.double()[mask])

    def _add(self, row: int, errors: torch.Tensor) -> None:
        e = errors.reshape(-1)
        self.sums[row] += [float(e.abs().sum()), float(e.square().sum()), e.numel()]

    # --------------------------------------------------------------- merging across processes
    def as_tensor(self) -> torch.Tensor:
        parts = [self.sums.ravel(), self.element_sums.ravel(), [self.loss_sum]]
        return torch.from_numpy(np.concatenate(parts))

    def load_tensor(self, flat: torch.Tensor) -> None:
        flat = flat.numpy()
        n, m = self.sums.size, self.element_sums.size
        self.sums = flat[:n].reshape(self.sums.shape).copy()
        self.element_sums = flat[n : n + m].reshape(self.element_sums.shape).copy()
        self.loss_sum = float(flat[n + m])

    # --------------------------------------------------------------- results
    def results(self) -> dict:
        out: dict = {}
        for row, name in enumerate(self.quantities):
            abs_sum, sq_sum, count = self.sums[row]
            if count:
                out[f"{name}_mae"] = float(abs_sum / count)
                out[f"{name}_rmse"] = float(np.sqrt(sq_sum / count))
        per_element = {}
        for z in np.flatnonzero(self.element_sums[:, 2]):
            abs_sum, sq_sum, count = self.element_sums[z]
            per_element[chemical_symbols[z]] = {
                "mae": float(abs_sum / count),
                "rmse": float(np.sqrt(sq_sum / count)),
                "count": int(count),
            }
        if per_element:
            out["forces_per_element"] = per_element
        out["num_frames"] = int(self.sums[0, 2])
        return out
