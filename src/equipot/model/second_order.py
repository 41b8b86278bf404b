"""Second derivatives of the energy in one C++ engine: training gradients and Hessians.

:class:`SecondOrderPass` drives ``kernels/training.cpp``, which evaluates the same function as
:class:`~equipot.model.energy_model.EnergyModel` (same weights, same operations) together with
its first-order backward pass and, in forward mode, the tangents of both.

Training. With atomic energies E_i(θ, r), edge gradients g_e = ∂E/∂r_e (E = Σ_i E_i) and a
loss L(E_s, F, σ) of energies, forces and stresses (F and σ are linear in the g_e), the loss's
derivatives define a per-atom seed a_i = ∂L/∂E_s(i) and an edge direction r'_e (below), and

    dL/dθ = Σ_i a_i ∂E_i/∂θ + Σ_e r'_e · ∂g_e/∂θ = d/dε [∂/∂θ Σ_i (1 + ε a_i) E_i(r + ε r')]

i.e. the tangent of the parameter gradient of the seeded energy along (r', a). The engine
runs the forward pass and its backward pass once (energies, forces, stress), then propagates
that tangent through both ("forward over reverse") and accumulates dL/dθ — the work of two to
three forward passes, with no autograd graph. The edge direction follows from
F_i = Σ_{e: i_e=i} g_e − Σ_{e: j_e=i} g_e and σ_s = sym Σ_{e∈s} r_e ⊗ g_e / V_s:

    r'_e = u_(i_e) − u_(j_e) + r_e · M_s,    u = ∂L/∂F,  M_s = sym(∂L/∂σ_s) / V_s

Hessians. For frozen weights the same tangents along displacement directions give
H·v = ∂²E/∂r² · v per edge; R(r), R'(r), R''(r) of the radial network then come from
second-order forward mode at every edge length (exact, once for all directions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from equipot.kernels import cpu_kernels
from equipot.model.inference import EngineSlot, _component_mixing, unique_monomials
from equipot.model.terms import TermInputs
from equipot.nn.constants import parameter_list
from equipot.nn.linear import SILU_SCALE

if TYPE_CHECKING:
    from equipot.graph import AtomicGraph
    from equipot.model.energy_model import EnergyModel
    from equipot.nn.neighborhood import PaddedNeighbors


def engine_parameters(model: EnergyModel) -> list[nn.Parameter]:
    """The network's parameters in the order the engine reports their gradients."""
    params = [model.embedding]
    for layer in model.layers:
        edge, node = layer.edge, layer.node
        if layer.linear_up is not None:
            params.append(layer.linear_up.weights)
        params += [*edge.radial.weights, *edge.path_mixing, *node.product.weights]
        params.append(node.linear_out.weights)
        if node.self_connection is not None:
            params.append(node.self_connection.weights)
        params += list(node.readout)
    return params


def build_second_order_engine(model: EnergyModel):
    """A C++ ``SecondOrderEngine`` reading ``model``'s parameters (live: updates in place are
    seen; constants are converted to the parameters' dtype once)."""
    c = model.config
    dtype = model.dtype
    like = torch.empty(0, dtype=dtype)
    index_like = torch.empty(0, dtype=torch.int64)
    exponents, coefficients = unique_monomials(c.l_max)
    radial = model.edge_features.radial_basis
    inv_avg = 1.0 / c.avg_num_neighbors
    engine = cpu_kernels().SecondOrderEngine(
        float(c.r_max),
        int(c.envelope_exponent),
        [float(f) for f in radial.constants.array("frequencies")],
        float(radial.prefactor),
        torch.as_tensor(coefficients, dtype=dtype),
        [int(e) for e in exponents.reshape(-1)],
        int(c.l_max),
        inv_avg,
        float(c.scale),
        float(c.shift),
        model.constants.get("e0", like).contiguous(),
        model.embedding,
        float(SILU_SCALE),
    )
    empty = torch.empty(0, dtype=dtype)
    for layer in model.layers:
        edge, node = layer.edge, layer.node
        tp, product = edge.tensor_product, node.product
        path_cols, _ = _component_mixing(tp, list(edge.path_mixing))
        tables = tp.kernel_tables(index_like, like)
        tables[1] = path_cols
        orders = range(1, product.correlation + 1)
        engine.add_layer(
            empty if layer.linear_up is None else layer.linear_up.weights,
            list(edge.radial.weights),
            list(edge.path_mixing),
            list(tp.paths_per_l),
            max(tp.paths_per_l),
            tables,
            [product.constants.get(f"factors_{nu}", index_like) for nu in orders],
            [product.constants.get(f"outputs_{nu}", index_like) for nu in orders],
            [product.constants.get(f"terms_{nu}", like) for nu in orders],
            list(product.weights),
            int(product.dim_out),
            node.linear_out.weights,
            empty if node.self_connection is None else node.self_connection.weights,
            list(node.readout),
        )
    if engine.num_parameters() != len(engine_parameters(model)):
        raise RuntimeError("second-order engine: parameter list out of step with the model")
    return engine


def second_order_available(model: EnergyModel, dtype: torch.dtype) -> bool:
    """The engine applies: CPU parameters of ``dtype`` (float32/64), kernels built and no
    long-range term (its charges and Coulomb sums run in PyTorch)."""
    return (
        model.long_range is None
        and model.config.saturation is None  # the engine's network is unbounded: autograd
        and model.embedding.device.type == "cpu"
        and model.dtype == dtype
        and dtype in (torch.float32, torch.float64)
        and cpu_kernels() is not None
    )


class SecondOrderPass:
    """One graph through the engine: energies and edge gradients, then tangents.

    Holds the padded layout of the graph; :meth:`parameter_gradients` (trainable weights) or
    :meth:`hessian_vectors` (frozen weights) follow a call of the constructor.
    :meth:`many` runs several graphs (the parts of one batch) at once, one thread each.
    """

    def __init__(self, model: EnergyModel, graph: AtomicGraph, *, frozen: bool):
        (engine,), params = _engines(model, 1)
        self._prepare(model, graph, engine, params)
        with torch.no_grad():
            atomic, slot_grad = engine.forward_backward(*self._inputs(frozen))
        self._finish(atomic, slot_grad)

    @classmethod
    def many(cls, model: EnergyModel, graphs: list[AtomicGraph]) -> list[SecondOrderPass]:
        """Training passes of several graphs at once (``forward_backward_many``: one engine
        and one thread per graph, the engine's own loops serial); the same numbers as one
        pass per graph."""
        engines, params = _engines(model, len(graphs))
        passes = [cls.__new__(cls) for _ in graphs]
        for run, engine, graph in zip(passes, engines, graphs, strict=True):
            run._prepare(model, graph, engine, params)
        with torch.no_grad():
            outputs = cpu_kernels().forward_backward_many(
                engines, [run._tensors() for run in passes]
            )
        for run, (atomic, slot_grad) in zip(passes, outputs, strict=True):
            run._finish(atomic, slot_grad)
        _slot(model).split_runs = getattr(_slot(model), "split_runs", 0) + 1
        return passes

    def _prepare(self, model: EnergyModel, graph: AtomicGraph, engine, params) -> None:
        self.engine, self.parameters, self.model = engine, params, model
        with torch.no_grad():
            species, padded, vectors, slots = model._prepare(graph)
            self._pairs = radial_pairs(graph, padded)
        self._slots = slots
        self.padded: PaddedNeighbors = padded
        self.species = species
        self.vectors = vectors  # (E, 3) edge vectors r_e

    def _inputs(self, frozen: bool) -> tuple:
        """The arguments of the engine's ``forward_backward``."""
        p = self.padded
        return (self._slots, p.neighbors, p.counts, self.species, frozen, *self._pairs)

    def _tensors(self) -> list[Tensor]:
        """Those of a training pass in ``forward_backward_many``: without the mode flag."""
        p = self.padded
        return [self._slots, p.neighbors, p.counts, self.species, *self._pairs]

    def _finish(self, atomic: Tensor, slot_grad: Tensor) -> None:
        self.atomic_energies = atomic  # (N,)
        self.edge_gradient = self.padded.gather(slot_grad)  # (E, 3) ∂E/∂r_e
        del self._slots

    def _edge_slots(self, edge_tangent: Tensor) -> Tensor:
        return self.padded.scatter(edge_tangent, fill=edge_tangent.new_zeros(3))

    def parameter_gradients(self, edge_tangent: Tensor, seed: Tensor) -> None:
        """Add dL/dθ for the edge direction r' (E, 3) and seed a (N,) to the ``.grad`` of
        every network parameter (created as zeros where missing)."""
        grads = _parameter_grads(self.parameters)
        self.engine.parameter_gradients(self._edge_slots(edge_tangent), seed.contiguous(), grads)

    @staticmethod
    def parameter_gradients_many(
        passes: list[SecondOrderPass], edge_tangents: list[Tensor], seeds: list[Tensor]
    ) -> None:
        """:meth:`parameter_gradients` of passes from :meth:`many`, at once; each engine adds
        into its own buffers (threads never share a tensor), summed into ``.grad`` after."""
        grads = _parameter_grads(passes[0].parameters)
        buffers = [grads] + [[torch.zeros_like(g) for g in grads] for _ in passes[1:]]
        cpu_kernels().parameter_gradients_many(
            [run.engine for run in passes],
            [run._edge_slots(t) for run, t in zip(passes, edge_tangents, strict=True)],
            [seed.contiguous() for seed in seeds],
            buffers,
        )
        for extra in buffers[1:]:
            torch._foreach_add_(grads, extra)

    def hessian_vectors(self, edge_tangents: Tensor) -> Tensor:
        """(∂g_e/∂r)·r' for B edge directions (B, E, 3) → (B, E, 3)."""
        n, k = self.padded.neighbors.shape
        b = edge_tangents.shape[0]
        if self.padded.dense:
            slots = edge_tangents.reshape(b, n, k, 3)
        else:
            slots = edge_tangents.new_zeros(b, n * k, 3)
            slots[:, self.padded.flat_slot] = edge_tangents
            slots = slots.view(b, n, k, 3)
        out = self.engine.hessian_vector(slots.contiguous()).view(b, n * k, 3)
        return out if self.padded.dense else out[:, self.padded.flat_slot]


def radial_pairs(graph: AtomicGraph, padded: PaddedNeighbors) -> tuple[Tensor, Tensor]:
    """Slots of an edge (i, j, S) and of its reverse (j, i, −S) have the same length, so the
    engine evaluates the radial network once per such pair. Returns a slot of every pair
    (P,) — the one of its lower edge index — and the pair of every slot (N·K,), P for empty
    slots."""
    i, j = graph.edge_index[0], graph.edge_index[1]
    num_edges = i.shape[0]
    shift = graph.edge_shift.round().to(torch.int64)
    m = int(shift.abs().max()) + 1 if num_edges else 1
    base = 2 * m + 1

    def key(a, b, s):
        code = ((s[:, 0] + m) * base + (s[:, 1] + m)) * base + (s[:, 2] + m)
        return (a * graph.num_atoms + b) * base**3 + code

    canonical = torch.minimum(key(i, j, shift), key(j, i, -shift))
    unique, inverse = torch.unique(canonical, return_inverse=True)
    edges = torch.arange(num_edges, device=i.device)
    first = torch.full_like(unique, num_edges).scatter_reduce_(0, inverse, edges, "amin")
    pair_first = padded.flat_slot.index_select(0, first)
    pair_slot = torch.full((padded.neighbors.numel(),), len(unique), dtype=torch.int64)
    return pair_first, pair_slot.index_copy_(0, padded.flat_slot, inverse)


def _engines(model: EnergyModel, count: int) -> tuple[list, list[nn.Parameter]]:
    """``count`` engines of ``model`` (built on first use, rebuilt when a parameter tensor was
    replaced) and the parameters in their gradient order."""
    slot = _slot(model)
    params = parameter_list(model)  # (cached) a changed tensor means a rebuilt engine
    key = (model.dtype, tuple(p.data_ptr() for p in params))
    if slot.engine is None or slot.key != key:
        slot.engine, slot.key = build_second_order_engine(model), key
        slot.parameters = engine_parameters(model)
        slot.more_engines = []
    more = slot.more_engines
    while len(more) < count - 1:
        more.append(build_second_order_engine(model))
    slot.runs = getattr(slot, "runs", 0) + count  # lets tests check that the engine ran
    return [slot.engine, *more[: count - 1]], slot.parameters


def _parameter_grads(params: list[nn.Parameter]) -> list[Tensor]:
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return [p.grad for p in params]


def _slot(model: EnergyModel) -> EngineSlot:
    """The model's second-order engine holder (copies and pickles of the model start empty)."""
    slot = model.__dict__.get("second_order_slot")
    if slot is None:
        slot = model.__dict__["second_order_slot"] = EngineSlot()
    return slot


def engine_runs(model: EnergyModel) -> int:
    """How many graphs went through ``model``'s second-order engine (for tests)."""
    return getattr(model.__dict__.get("second_order_slot"), "runs", 0)


def split_runs(model: EnergyModel) -> int:
    """How many batches went through :meth:`SecondOrderPass.many` (for tests)."""
    return getattr(model.__dict__.get("second_order_slot"), "split_runs", 0)


# Directions per engine call for Hessians: bounds the tangent buffers (B × slots × P·C).
HESSIAN_CHUNK_ELEMENTS = 1 << 23


def hessian_vectors(model: nn.Module, graph: AtomicGraph, vectors: Tensor) -> Tensor | None:
    """H·v for displacement directions ``vectors`` (B, N, 3) → (B, N, 3), exact, from the
    engine; ``None`` where it does not apply (weights that require gradients, another device
    or dtype, kernels switched off): use autograd then.

    With g̃_e the tangent of ∂E/∂r_e along r'_e = v_j − v_i,
    (H·v)_i = Σ_{e: j_e = i} g̃_e − Σ_{e: i_e = i} g̃_e; the network's g̃_e come from the engine,
    those of the parameter-free energy terms (ZBL repulsion, ...) from
    :meth:`~equipot.model.terms.base.EnergyTerm.edge_hessian_vectors`.
    """
    from equipot.model.energy_model import EnergyModel
    from equipot.model.engine_pass import ceiling_holds
    from equipot.nn.constants import is_frozen

    if not (
        isinstance(model, EnergyModel)
        and model.fused_inference
        and is_frozen(model)
        and second_order_available(model, graph.dtype)
        and vectors.dtype == graph.dtype
        and (model.heads is None or not model.heads.field_active(graph))  # field energy
        and not model.floor_holds(graph)  # the second-order engine reads unfloored edges
        and not ceiling_holds(model, graph)  # nor does it apply the feature ceiling
    ):
        return None
    run = SecondOrderPass(model, graph, frozen=True)
    terms = list(model.terms.values())
    inputs = TermInputs(graph, run.species, run.vectors)
    i, j = graph.edge_index[0], graph.edge_index[1]
    width = max(layer.edge.radial.weights[-1].shape[1] for layer in model.layers)
    chunk = max(1, HESSIAN_CHUNK_ELEMENTS // max(1, run.padded.neighbors.numel() * width))
    out = []
    for part in torch.split(vectors, chunk):
        tangents = part.index_select(1, j) - part.index_select(1, i)
        edge = run.hessian_vectors(tangents)
        for term in terms:
            edge = edge + term.edge_hessian_vectors(inputs, tangents)
        hv = torch.zeros_like(part).index_add_(1, j, edge)
        out.append(hv.index_add_(1, i, edge, alpha=-1.0))
    return torch.cat(out)
