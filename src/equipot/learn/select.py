"""Selection: which candidates to label, by uncertainty with diversity.

Every candidate frame gets a score and a latent descriptor (the mean of its atoms' whitened
readout features). ``auto`` scores a committee by its largest per-atom force std and a single
model by its largest latent distance; a conformal force ball ranks frames by its σ_i (the
ranking of R_i = q̂·σ_i without q̂, which is infinite while the calibration split holds fewer
than ⌈(n+1)(1−α)⌉ frames, as in the first rounds of a loop, and would then tie every frame).
The latent distance comes first for single models because it needs no calibration split
(it is fitted on the training frames, however few) and it ranked per-structure force errors
best or nearly best in the uncertainty benchmarks, whereas a ball calibrated on a handful of
validation frames may have picked the last-layer energy variance, which does not rank force
errors at all on molecules (RESULTS.md, "Uncertainty"). The ``pool_factor × n``
highest-scoring candidates form the pool; farthest-point sampling in descriptor space then
picks n of them, each time the one farthest from everything labelled or picked so far, so the
batch does not spend labels on near-copies of one uncertain configuration.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.graph import batch_graphs
from equipot.uq.committee import load_models
from equipot.uq.estimate import UncertainPredictor

SCORES = ("committee", "latent", "force_radius", "energy_std")  # the order ``auto`` tries


def _score_name(requested: str, predictor: UncertainPredictor) -> str:
    available = set(predictor.available())
    table = {
        "force_radius": "force_radius",
        "committee": "forces_std",
        "latent": "latent_distance",
        "energy_std": "energy_std",
    }
    if requested != "auto":
        if table[requested] not in available:
            raise ValueError(f"selection score {requested!r} is not available for this model")
        return requested
    for name in SCORES:
        if table[name] in available and (name != "committee" or predictor.is_committee):
            return name
    raise ValueError("the model has no uncertainty to select by (fit it, or use a committee)")


def score_frames(
    model_path, frames: list[Atoms], score: str = "auto", batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray, str]:
    """(scores (C,), descriptors (C, D), score name) of ``frames`` under the model or
    committee in ``model_path``."""
    members, committee_uq = load_models(model_path)
    models = [frozen_copy(m, torch.float64, "cpu") for m in members]
    predictor = UncertainPredictor(models, committee_uq)
    name = _score_name(score, predictor)
    latent = members[0].uncertainty.latent if members[0].uncertainty is not None else None
    cutoff = members[0].config.r_max
    scores, descriptors = [], []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        graph = batch_graphs([atoms_to_graph(a, cutoff, torch.float64) for a in chunk])
        with torch.enable_grad():
            out = predictor(graph)
        per_atom = {
            "force_radius": out.force_sigma,  # the radius's ranking, finite (module docstring)
            "committee": out.forces_std,
            "latent": out.latent_distance,
        }.get(name)
        systems = graph.num_systems
        if per_atom is not None:
            s = torch.full((systems,), -torch.inf, dtype=torch.float64)
            s = s.scatter_reduce(0, graph.batch, per_atom.double(), reduce="amax")
        else:
            s = out.energy_std.double() / graph.n_atoms.double()
        scores.append(s.numpy())
        features = out.committee.members[0].features if out.committee else out.prediction.features
        if features is None:  # no fit: raw features of the first model
            features = models[0](graph, features=True).features
        u = features.detach().double()
        if latent is not None:
            u = latent.whitened(u, graph.atomic_numbers)
            u = torch.nan_to_num(u, nan=0.0, posinf=1e6, neginf=-1e6)
        mean = torch.zeros(systems, u.shape[1], dtype=torch.float64).index_add_(0, graph.batch, u)
        descriptors.append((mean / graph.n_atoms.double()[:, None]).numpy())
    return np.concatenate(scores), np.concatenate(descriptors), name


def farthest_points(
    descriptors: np.ndarray,
    n: int,
    reference: np.ndarray | None,
    first: int,
    weights: np.ndarray | None = None,
) -> list[int]:
    """n indices by farthest-point sampling, starting from ``first`` (or, with ``reference``
    points, from the candidate farthest from them). With ``weights`` w_c each pick maximises
    w_c · d_c, d_c the distance to the nearest reference or picked point."""
    n = min(n, len(descriptors))
    w = np.ones(len(descriptors)) if weights is None else np.asarray(weights, dtype=float)
    if reference is not None and len(reference):
        d = np.min(np.linalg.norm(descriptors[:, None] - reference[None], axis=2), axis=1)
        picked = []
    else:
        picked = [first]
        d = np.linalg.norm(descriptors - descriptors[first], axis=1)
    while len(picked) < n:
        d[picked] = -np.inf
        k = int(np.argmax(np.where(np.isfinite(d), w * d, -np.inf)))
        picked.append(k)
        d = np.minimum(d, np.linalg.norm(descriptors - descriptors[k], axis=1))
    return picked


def select(
    scores: np.ndarray,
    descriptors: np.ndarray,
    n: int,
    *,
    method: str = "uncertainty",
    pool_factor: float = 3.0,
    diversity: bool = True,
    strategy: str = "top",
    labelled: np.ndarray | None = None,
    seed: int = 0,
) -> list[int]:
    """Indices of the candidates to label (module docstring); ``random``: uniformly.

    ``strategy`` ``top``: farthest points among the ``pool_factor × n`` most uncertain;
    ``weighted``: over all candidates, each pick the largest score × distance to the labelled
    and picked frames, so that moderately uncertain regions far from the labels get some
    labels too, rather than the most uncertain region drawing every one."""
    if method == "random":
        rng = np.random.default_rng(seed)
        return sorted(rng.choice(len(scores), size=min(n, len(scores)), replace=False).tolist())
    if strategy == "weighted" and diversity:
        w = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0, posinf=1e300)
        return sorted(farthest_points(descriptors, n, labelled, int(np.argmax(w)), w))
    order = np.argsort(-scores, kind="stable")
    if not diversity:
        return sorted(order[:n].tolist())
    pool = order[: max(n, int(np.ceil(pool_factor * n)))]
    picked = farthest_points(descriptors[pool], n, labelled, first=0)
    return sorted(pool[picked].tolist())
