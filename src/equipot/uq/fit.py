"""Fitting a model's uncertainty on its training set: latent Gaussians and the last-layer G.

One pass over the training frames with the inference copy gives the readout features of every
atom (per-element moments → :class:`~equipot.uq.latent.LatentGaussian`) and the energy rows of
G; the force rows (feature Jacobians, D backward passes a batch) are taken from a random
subset of ``force_frames`` frames, normalised by their own component count, so the cost stays
bounded on large training sets (see :mod:`equipot.uq.llpr`).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers as Z_OF

from equipot.calculator import frozen_copy
from equipot.data.dataset import GraphDataset
from equipot.model.energy_model import EnergyModel
from equipot.physics.derivatives import predict
from equipot.progress import progress_iter
from equipot.uq.latent import FeatureMoments
from equipot.uq.llpr import GramAccumulator, LastLayerPosterior, feature_jacobian, system_features
from equipot.uq.store import Uncertainty

DEFAULT_REGULARIZER = 1e-3  # λ before calibration, relative to the mean eigenvalue of G


def fit_uncertainty(
    model: EnergyModel,
    dataset: GraphDataset,
    *,
    energy_weight: float = 1.0,
    forces_weight: float = 100.0,
    element_weights: dict[str, float] | None = None,
    force_frames: int = 100,
    batch_size: int = 16,
    ridge: float = 1e-6,
    seed: int = 0,
    progress: bool = False,
) -> Uncertainty:
    """Latent Gaussians and the last-layer posterior (λ at its default, τ = 1) of ``model``
    over ``dataset`` (loss weights as in training: they set the force/energy balance of G)."""
    if getattr(model.config, "saturation", None) is not None:
        raise ValueError(
            "the last-layer posterior needs energies affine in the readout weights; "
            f"model.saturation = {model.config.saturation} eV makes them c·tanh(·/c)"
        )
    net = frozen_copy(model, torch.float64, "cpu")
    D = int(net.readout_weights().numel())
    moments = FeatureMoments(D)
    gram = GramAccumulator(D, energy_weight, forces_weight)
    table = torch.ones(119, dtype=torch.float64)
    for element, w in (element_weights or {}).items():
        table[Z_OF[element]] = w
    n = len(dataset)
    chosen = np.zeros(n, bool)
    chosen[np.random.default_rng(seed).permutation(n)[: min(force_frames, n)]] = True
    # the force-row frames batched among themselves: the Jacobian of a batch costs D backward
    # passes over all of its frames, whether their rows are kept or not
    batches = [
        group[k : k + batch_size]
        for group in (np.flatnonzero(chosen), np.flatnonzero(~chosen))
        for k in range(0, len(group), batch_size)
    ]
    for positions in progress_iter(batches, "uncertainty fit", enabled=progress, leave=False):
        batch = dataset.batch(positions, torch.float64)
        graph = batch.graph
        with torch.enable_grad():
            pred = predict(net, graph, forces=True, features=True)
        phi = pred.features.detach()
        moments.add(phi, graph.atomic_numbers)
        gram.add_energies(system_features(phi, graph), graph.n_atoms, batch.weight)
        rows = torch.as_tensor(chosen[positions])
        if forces_weight and bool(rows.any()):
            atom_weight = (
                batch.weight[graph.batch]
                * batch.atom_has_forces.double()
                * table[graph.atomic_numbers]
                * rows[graph.batch].double()
            )
            gram.add_forces(feature_jacobian(net, graph), atom_weight)
    g = torch.as_tensor(gram.gram())
    lam = DEFAULT_REGULARIZER * max(float(torch.trace(g)) / D, 1e-30)
    posterior = LastLayerPosterior(gram=g, regularizer=lam)
    return Uncertainty(latent=moments.gaussian(ridge), posterior=posterior)
