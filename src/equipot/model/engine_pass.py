"""Energies and edge gradients of frozen models from the C++ inference engine, for one model
(:func:`inference_pass`, what :meth:`EnergyModel.inference_pass` runs) or for the members of a
committee on one graph (:func:`committee_pass`).

A committee's members share the cutoff and elements (``uq.committee.check_members``), so the
graph preparation — element indices, the padded neighbour layout, the edge vectors — is done
once for all of them; so are the radial floor and the extra energy terms (ZBL) where every
member has the same ones (members trained on the same data do). Only the engines differ; they
run in one C++ call, side by side on the intra-op threads (each member on one thread) or one
after another with one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from equipot.graph import AtomicGraph
from equipot.kernels import cpu_kernels
from equipot.model.inference import engine_for
from equipot.model.long_range import on_engine_scalars
from equipot.model.terms import TermInputs
from equipot.nn.constants import is_frozen

if TYPE_CHECKING:
    from equipot.model.energy_model import EnergyModel, ModelOutput


def engine_applies(model: EnergyModel, graph: AtomicGraph) -> bool:
    """Whether the engine evaluates ``model`` on ``graph``: frozen weights on the CPU in the
    graph's dtype, kernels built, no bounded (saturated) network, no active field coupling."""
    positions = graph.positions
    return (
        model.fused_inference
        and model.config.saturation is None  # the engine evaluates the unbounded network
        and positions.device.type == "cpu"
        and positions.dtype == model.dtype
        and positions.dtype in (torch.float32, torch.float64)
        and is_frozen(model)
        and cpu_kernels() is not None
        and not (model.heads is not None and model.heads.field_active(graph))
    )


def inference_pass(
    model: EnergyModel,
    graph: AtomicGraph,
    gradient: bool = True,
    features: bool = False,
    strain: bool = False,
) -> tuple[ModelOutput, Tensor, Tensor | None] | None:
    """See :meth:`EnergyModel.inference_pass`."""
    from equipot.model.energy_model import ModelOutput

    if not engine_applies(model, graph):
        return None
    if model.long_range is not None and features:
        return None  # the engine's readout features with charges: the PyTorch path
    with torch.no_grad():
        species, padded, vectors, slots = model._prepare(graph)
        engine = engine_for(model, graph.positions.dtype)
        floor = model.radial_floor
        held = floor is not None and floor.holds(slots, species, padded.neighbors)
        seen = floor(slots, species, padded.neighbors) if held else slots
        if model.long_range is None:
            atomic, slot_grad, feats = engine.run(
                seen, padded.neighbors, padded.counts, species, gradient, features
            )
            long_range = None
        else:
            atomic, scalars, kept = engine.forward(seen, padded.neighbors, padded.counts, species)
            long_range = on_engine_scalars(
                model.long_range, graph, scalars, species, gradient, strain
            )
            atomic = atomic + long_range.atomic_energies
            slot_grad = engine.backward(kept, long_range.scalar_gradient) if gradient else None
        if held and gradient:
            slot_grad = floor.slot_gradient(slots, species, padded.neighbors, slot_grad)
        edge_grad = padded.gather(slot_grad) if gradient else None
        term_atomic, term_grad = _terms(model, TermInputs(graph, species, vectors), gradient)
        atomic = atomic + term_atomic
        if gradient:
            edge_grad = edge_grad + term_grad
        energy = model._system_energy(graph, atomic)
        # the engine leaves out the SiLU normalisation and the scale
        feats = feats * model._engine_feature_factors(feats) if features else None
    out = ModelOutput(energy=energy, atomic_energies=atomic, features=feats)
    if long_range is not None:
        out.charges, out.direct_gradient = long_range.charges, long_range.direct_gradient
    return out, vectors, edge_grad


def ceiling_holds(model: EnergyModel, graph: AtomicGraph) -> bool:
    """Whether the model's feature ceiling changes any block of ``graph``'s messages (one
    forward pass; False without a ceiling)."""
    ceiling = model.feature_ceiling
    if ceiling is None:
        return False
    with torch.no_grad():
        if engine_applies(model, graph):
            species, padded, _, slots = model._prepare(graph)
            floor = model.radial_floor
            if floor is not None and floor.holds(slots, species, padded.neighbors):
                slots = floor(slots, species, padded.neighbors)
            engine = engine_for(model, graph.positions.dtype)
            return engine.ceiling_holds(slots, padded.neighbors, padded.counts, species)
        probe = _CeilingProbe(ceiling)
        model.feature_ceiling = probe
        try:
            model.local_energies(graph)
        finally:
            model.feature_ceiling = ceiling
        return probe.held


class _CeilingProbe(torch.nn.Module):
    """The ceiling, noting whether it held (the PyTorch path of :func:`ceiling_holds`)."""

    def __init__(self, ceiling: torch.nn.Module):
        super().__init__()
        self.ceiling, self.held = ceiling, False

    def forward(self, layer: int, A: Tensor) -> Tensor:
        self.held = self.held or self.ceiling.holds(layer, A)
        return self.ceiling(layer, A)


def committee_pass(
    members: Sequence[EnergyModel],
    graph: AtomicGraph,
    gradient: bool = True,
    features: bool = False,
) -> tuple[list[ModelOutput], Tensor, Tensor | None] | None:
    """Every member's outputs, the shared edge vectors (E, 3) and the members' edge gradients
    ∂E^(k)/∂r_e stacked as (E, K, 3); ``None`` where the engine does not apply to every member
    (or a member has long-range electrostatics): evaluate them one by one then."""
    from equipot.model.energy_model import ModelOutput

    if not all(engine_applies(m, graph) and m.long_range is None for m in members):
        return None
    first = members[0]
    with torch.no_grad():
        species, padded, vectors, slots = first._prepare(graph)
        floors = _shared(members, _floor_signature)
        seen, held = [], []
        for k, m in enumerate(members):
            if k and floors:
                seen.append(seen[0])
                held.append(held[0])
                continue
            holds = m.radial_floor is not None and m.radial_floor.holds(
                slots, species, padded.neighbors
            )
            held.append(holds)
            seen.append(m.radial_floor(slots, species, padded.neighbors) if holds else slots)
        engines = [engine_for(m, graph.positions.dtype) for m in members]
        runs = cpu_kernels().run_members(
            engines, seen, padded.neighbors, padded.counts, species, gradient, features
        )
        inputs = TermInputs(graph, species, vectors)
        terms = _shared(members, _terms_signature)
        shared_terms = _terms(first, inputs, gradient) if terms else None
        outputs, edge_grads = [], []
        for k, (m, (atomic, slot_grad, feats)) in enumerate(zip(members, runs, strict=True)):
            term_atomic, term_grad = shared_terms or _terms(m, inputs, gradient)
            atomic = atomic + term_atomic
            if gradient:
                if held[k]:
                    slot_grad = m.radial_floor.slot_gradient(
                        slots, species, padded.neighbors, slot_grad
                    )
                edge_grads.append(padded.gather(slot_grad) + term_grad)
            feats = feats * m._engine_feature_factors(feats) if features else None
            energy = m._system_energy(graph, atomic)
            outputs.append(ModelOutput(energy=energy, atomic_energies=atomic, features=feats))
    stacked = torch.stack(edge_grads, 1) if gradient else None
    return outputs, vectors, stacked


def _terms(model: EnergyModel, inputs: TermInputs, gradient: bool) -> tuple[Tensor, Tensor]:
    """Σ of the model's extra terms: atomic energies (N,) and, with ``gradient``, ∂E/∂r_e."""
    atomic = inputs.vectors.new_zeros(inputs.graph.num_atoms)
    grad = torch.zeros_like(inputs.vectors)
    for term in model.terms.values():
        if gradient:
            term_atomic, term_grad = term.edge_gradient(inputs)
            grad = grad + term_grad
        else:
            term_atomic = term(inputs)
        atomic = atomic + term_atomic
    return atomic, grad


def _shared(members: Sequence[EnergyModel], signature) -> bool:
    """Whether every member has the same ``signature`` (computed once per frozen model)."""
    first = signature(members[0])
    return all(signature(m) == first for m in members[1:])


def _floor_signature(model: EnergyModel) -> tuple:
    floor = model.radial_floor

    def build() -> tuple:
        if floor is None:
            return ()
        table = floor.constants.array("floor")
        return (floor.softness, table.shape, tuple(table.ravel().tolist()))

    return _cached(model, "floor", (id(floor),), build)


def _terms_signature(model: EnergyModel) -> tuple:
    terms = list(model.terms.items())

    def build() -> tuple:
        items = []
        for name, term in terms:
            tensors = term.engine_tensors()
            if tensors is None:  # a term without a description: never treated as shared
                return (object(),)
            described = {k: tuple(v.ravel().tolist()) for k, v in tensors.items()}
            items.append((name, type(term).__qualname__, tuple(sorted(described.items()))))
        return tuple(items)

    return _cached(model, "terms", tuple(id(t) for _, t in terms), build)


def _cached(model: EnergyModel, key: str, identity: tuple, build) -> tuple:
    """``build()`` once per model and per identity of the modules it describes (a copied or
    re-assigned floor or term is described afresh)."""
    cache = model.__dict__.setdefault("_engine_pass_cache", {})
    if key not in cache or cache[key][0] != identity:
        cache[key] = (identity, build())
    return cache[key][1]
