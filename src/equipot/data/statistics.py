"""Normalisation statistics of a training set, computed before the model is built.

The model's atomic energy is ``E_i = E0[z_i] + scale·Σ_t y_i^(t) + Σ_terms`` (see
:class:`~equipot.model.config.ModelConfig`). From the training frames:

* ``e0``: given by the user, or the mean energy of isolated-atom frames (one atom, no
  neighbours) where present — both physical references, kept fixed in training — or else the
  least-squares fit of ``E_s ≈ Σ_z n_sz E0_z`` on the element counts (a constant per-element
  offset that absorbs the mean interaction energy; training may refine it).
* ``avg_num_neighbors``: mean number of neighbours within r_max per atom.
* ``shift``: always 0. Earlier versions put the mean residual energy per atom into a term
  linear in the smooth coordination ρ_i; such a term extrapolates without bound where atoms
  gain neighbours (docs: ModelConfig). ``mean_coordination`` (mean ρ_i) is still reported.
* ``scale``: RMS of the force components (RMS of per-atom energy residuals without forces).
* ``binding_per_atom``: mean (E − Σ E0)/N of the frames that are not isolated atoms (with
  isolated-atom or given E0: minus the mean atomisation energy per atom); it sets the width
  of ``model.saturation``.
* ``shortest``: the shortest distance (Å) of each element pair within r_max, keyed
  ``"A-B"`` (elements in model order): where the data end, the ZBL switch begins
  (:func:`equipot.model.terms.zbl.switch_radii`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from ase.data import atomic_numbers as Z_OF
from ase.data import chemical_symbols

from equipot.data.dataset import GraphDataset
from equipot.data.frames import check_elements
from equipot.nn.radial import PolynomialEnvelope

_CHUNK = 2000  # frames per pass (bounded memory for data sets streamed from disk)


@dataclass
class Statistics:
    e0: dict[str, float]
    scale: float
    shift: float
    avg_num_neighbors: float
    mean_coordination: float  # mean ρ_i over training atoms
    e0_source: dict[str, str] = field(default_factory=dict)  # isolated / least-squares / given
    shortest: dict[str, float] = field(default_factory=dict)  # "A-B": Å (pairs within r_max)
    binding_per_atom: float = 0.0  # mean (E − Σ E0)/N over frames with neighbours, eV

    def as_dict(self) -> dict:
        return asdict(self)


def elements_in(dataset: GraphDataset) -> list[str]:
    numbers = np.unique(np.concatenate([_chunk(dataset, s)["numbers"] for s in _starts(dataset)]))
    return sorted((chemical_symbols[z] for z in numbers), key=lambda e: Z_OF[e])


def compute_statistics(
    dataset: GraphDataset,
    elements: list[str],
    r_max: float,
    envelope_exponent: int = 6,
    e0: dict[str, float] | None = None,
) -> Statistics:
    """Statistics of ``dataset`` (see module docstring); ``e0`` given by the user wins."""
    zs = [Z_OF[e] for e in elements]
    column = np.full(119, -1)
    column[zs] = np.arange(len(zs))
    envelope = PolynomialEnvelope(r_max, envelope_exponent)
    counts, energies, isolated = [], [], []
    n_atoms = n_neighbors = 0
    u_sum = f2_sum = n_force = 0.0
    n_el = len(zs)
    shortest = np.full(n_el * n_el, np.inf)
    for start in _starts(dataset):
        check_dataset_elements(dataset.subset(_chunk_range(dataset, start)), elements)
        batch = dataset.batch(np.arange(start, min(start + _CHUNK, len(dataset))))
        g = batch.graph
        lengths = torch.linalg.vector_norm(g.edge_vectors(), dim=1)
        inside = lengths < r_max
        n_atoms += g.num_atoms
        n_neighbors += int(inside.sum())
        u_sum += float(envelope(lengths[inside]).sum())
        col = torch.as_tensor(column)[g.atomic_numbers]
        a, b = col[g.edge_index[0]], col[g.edge_index[1]]
        pair = (torch.minimum(a, b) * n_el + torch.maximum(a, b))[inside]
        if pair.numel():
            low = torch.full((n_el * n_el,), np.inf, dtype=lengths.dtype)
            low = low.scatter_reduce(0, pair, lengths[inside], "amin")
            shortest = np.minimum(shortest, low.double().numpy())
        m = batch.atom_has_forces
        f2_sum += float(batch.forces[m].square().sum())
        n_force += 3 * int(m.sum())
        c = np.zeros((g.num_systems, len(zs)))
        np.add.at(c, (g.batch.numpy(), column[g.atomic_numbers.numpy()]), 1.0)
        counts.append(c)
        energies.append(batch.energy.numpy())
        degree = torch.bincount(g.edge_index[0][inside], minlength=g.num_atoms)
        isolated.append((g.n_atoms == 1).numpy() & (degree[_first_atoms(g)] == 0).numpy())
    counts, energies, isolated = map(np.concatenate, (counts, energies, isolated))
    e0_values, sources = _fit_e0(elements, counts, energies, isolated, e0 or {})
    residual = energies - counts @ e0_values
    bound = ~isolated
    binding = float((residual[bound] / counts[bound].sum(1)).mean()) if bound.any() else 0.0
    avg_num_neighbors = max(n_neighbors / n_atoms, 1e-3)
    mean_rho = u_sum / avg_num_neighbors / n_atoms
    if n_force:
        scale = float(np.sqrt(f2_sum / n_force))
    else:
        per_atom = residual[~isolated] / counts[~isolated].sum(1)
        scale = float(per_atom.std()) if per_atom.size > 1 else 1.0
    return Statistics(
        e0={e: float(v) for e, v in zip(elements, e0_values, strict=True)},
        scale=scale if scale > 1e-12 else 1.0,
        shift=0.0,
        avg_num_neighbors=float(avg_num_neighbors),
        mean_coordination=float(mean_rho),
        e0_source=sources,
        binding_per_atom=binding,
        shortest={
            f"{elements[k // n_el]}-{elements[k % n_el]}": float(shortest[k])
            for k in np.flatnonzero(np.isfinite(shortest))
        },
    )


def _fit_e0(elements, counts, energies, isolated, given):
    values = np.zeros(len(elements))
    sources, known = {}, np.zeros(len(elements), dtype=bool)
    for k, element in enumerate(elements):
        if element in given:
            values[k], sources[element], known[k] = given[element], "given", True
            continue
        single = isolated & (counts[:, k] == 1)
        if single.any():
            values[k], sources[element], known[k] = energies[single].mean(), "isolated", True
    unknown = ~known
    if unknown.any():
        rows = ~isolated
        target = energies[rows] - counts[rows][:, known] @ values[known]
        fit, *_ = np.linalg.lstsq(counts[rows][:, unknown], target, rcond=None)
        values[unknown] = fit
        for k in np.flatnonzero(unknown):
            sources[elements[k]] = "least-squares"
    return values, sources


def check_dataset_elements(dataset: GraphDataset, elements: list[str]) -> None:
    """Raise ``ValueError`` naming the file, frame and atom of an element not in ``elements``."""
    numbers = dataset.frame_arrays(["numbers"])["numbers"].astype(np.int64)
    allowed = np.zeros(119, dtype=bool)
    allowed[[Z_OF[e] for e in elements]] = True
    bad = np.flatnonzero(~allowed[numbers])
    if bad.size:
        ends = np.cumsum(dataset.num_atoms())
        k = int(np.searchsorted(ends, bad[0], side="right"))
        atom = int(bad[0] - (ends[k - 1] if k else 0))
        where = f"{dataset.name} frame {int(dataset.indices[k])}"
        check_elements(numbers[bad[0] : bad[0] + 1], elements, f"{where}, atom {atom}")


def _starts(dataset: GraphDataset) -> range:
    return range(0, len(dataset), _CHUNK)


def _chunk_range(dataset: GraphDataset, start: int) -> np.ndarray:
    return np.arange(start, min(start + _CHUNK, len(dataset)))


def _chunk(dataset: GraphDataset, start: int) -> dict[str, np.ndarray]:
    return dataset.subset(_chunk_range(dataset, start)).frame_arrays(["numbers"])


def _first_atoms(graph) -> torch.Tensor:
    return torch.cumsum(graph.n_atoms, 0) - graph.n_atoms
