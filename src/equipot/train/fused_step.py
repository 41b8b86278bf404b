"""Loss and parameter gradients of one batch: the fused second-order engine, or autograd.

:func:`loss_and_gradients` is the trainer's per-batch computation. On the CPU with the
kernels built (and ``EQUIPOT_KERNELS`` not ``0``) the network's part runs in the C++ engine
(:mod:`equipot.model.second_order`): energies, forces and stress, then the loss in PyTorch on
those few tensors (any loss of :mod:`equipot.train.loss`), then dL/dθ by the engine's tangent
pass. The trainable terms outside the network (:class:`~equipot.train.model.TrainingModel`:
the per-element offset δ and the coordination coefficient s) have closed-form gradients:

    ∂L/∂δ_z = m_z Σ_{i: z_i = z} a_i,     ∂L/∂s = Σ_i a_i ρ_i + Σ_e r'_e · û_e u'(r_e) / n̄

(a_i = ∂L/∂E_s(i), m the mask of refined elements — E0 the user gave stays fixed —, r' the
edge direction of second_order.py). Everywhere else — other
devices, kernels off — it is ``predict(..., create_graph=True)`` and ``loss.backward()``,
the reference both are tested against.

:func:`loss_and_gradients_split` takes one batch as several parts (the trainer gives one
per thread when the parts are big enough) and runs the parts' engine passes at the same
time, one thread each: the loss is a sum over frames with the whole batch's normalisation,
so the parts' losses and gradients add up to the whole batch's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from equipot.data.dataset import Batch
from equipot.model.energy_model import ModelOutput
from equipot.model.second_order import SecondOrderPass, second_order_available
from equipot.nn.constants import parameter_list
from equipot.physics.derivatives import Prediction, _from_edge_gradient, predict
from equipot.train.loss import LossFunction, Normalisation, loss_terms
from equipot.train.model import TrainingModel


def loss_and_gradients(
    model: TrainingModel,
    batch: Batch,
    loss: LossFunction,
    norm: Normalisation,
    *,
    stress: bool,
    born_charges: bool = False,
    fused: bool | None = None,
) -> tuple[float, Prediction]:
    """Accumulate dL/dθ of this batch into the parameters' ``.grad``; return L and the
    (detached) prediction. ``fused=None`` uses the engine wherever it applies."""
    if fused is None:  # fine-tuning models (replay heads, frozen groups), tensor heads and
        # their labels take autograd
        fused = (
            not born_charges
            and fused_applies(model, batch.graph.dtype)
            and not model.net.floor_holds(batch.graph)  # the engine reads unfloored edges
        )
    if not fused:
        pred = predict(
            model,
            batch.graph,
            forces=True,
            stress=stress,
            create_graph=True,
            born_charges=born_charges,
        )
        total = sum(loss_terms(pred, batch, loss, norm).values())
        total.backward()
        return float(total.detach()), _detached(pred)
    return _fused(model, batch, loss, norm, stress)


def _fused(
    model: TrainingModel, batch: Batch, loss: LossFunction, norm: Normalisation, stress: bool
) -> tuple[float, Prediction]:
    run = SecondOrderPass(model.net, batch.graph, frozen=False)
    part = _loss_part(model, batch, run, loss, norm, stress)
    run.parameter_gradients(part.direction, part.seed)
    part.extra.parameter_gradients(part.seed, part.direction)
    return part.loss, part.prediction


def fused_applies(model: TrainingModel, dtype: torch.dtype) -> bool:
    """Whether :func:`loss_and_gradients_split` can take this model (the fused step's
    conditions)."""
    return (
        type(model) is TrainingModel
        and model.net.heads is None
        and model.net.feature_ceiling is None  # measured after training; not in the step
        and all(p.requires_grad for p in parameter_list(model))
        and second_order_available(model.net, dtype)
    )


def loss_and_gradients_split(
    model: TrainingModel,
    batches: list[Batch],
    loss: LossFunction,
    norm: Normalisation,
    *,
    stress: bool,
) -> tuple[float, list[Prediction]]:
    """:func:`loss_and_gradients` of one batch given as parts (``norm`` of the whole batch),
    the parts' engine passes at once, one thread each: the same loss and dL/dθ as the whole
    batch in one pass, up to summation order. Only where :func:`fused_applies`; a part
    with an edge below the radial floor sends every part through autograd."""
    if any(model.net.floor_holds(b.graph) for b in batches):
        results = [
            loss_and_gradients(model, b, loss, norm, stress=stress, fused=False) for b in batches
        ]
        return sum(r[0] for r in results), [r[1] for r in results]
    runs = SecondOrderPass.many(model.net, [b.graph for b in batches])
    parts = [
        _loss_part(model, b, run, loss, norm, stress) for b, run in zip(batches, runs, strict=True)
    ]
    SecondOrderPass.parameter_gradients_many(
        runs, [p.direction for p in parts], [p.seed for p in parts]
    )
    for part in parts:
        part.extra.parameter_gradients(part.seed, part.direction)
    return sum(p.loss for p in parts), [p.prediction for p in parts]


def split_frames(frames: np.ndarray, num_atoms: np.ndarray, parts: int) -> list[np.ndarray]:
    """``frames`` in ``parts`` groups of about equal atom counts (largest frame first into
    the lightest group), each in its original order; empty groups dropped."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    load = np.zeros(parts)
    for k in np.argsort(-np.asarray(num_atoms), kind="stable"):
        g = int(np.argmin(load))
        groups[g].append(int(k))
        load[g] += num_atoms[k]
    return [np.asarray(frames)[sorted(g)] for g in groups if g]


class _LossPart(NamedTuple):
    loss: float
    prediction: Prediction
    direction: Tensor  # r' (E, 3)
    seed: Tensor  # a (N,)
    extra: _Extras


def _loss_part(
    model: TrainingModel,
    batch: Batch,
    run: SecondOrderPass,
    loss: LossFunction,
    norm: Normalisation,
    stress: bool,
) -> _LossPart:
    """After the engine's forward pass: the prediction, the loss and its derivatives as the
    engine's tangent inputs (edge direction r', seed a; module docstring)."""
    graph = batch.graph
    vectors, edge_grad, atomic = run.vectors, run.edge_gradient, run.atomic_energies
    extra = _Extras(model, graph, run)
    atomic = atomic + extra.atomic
    edge_grad = edge_grad + extra.edge_gradient
    terms = getattr(model.net, "terms", None)  # parameter-free energy terms (model/terms/)
    if terms:
        from equipot.model.terms import TermInputs

        inputs = TermInputs(graph, run.species, vectors)
        for term in terms.values():
            term_atomic, term_grad = term.edge_gradient(inputs)
            atomic = atomic + term_atomic.detach()
            edge_grad = edge_grad + term_grad.detach()
    energy = torch.zeros(graph.num_systems, dtype=atomic.dtype).index_add(0, graph.batch, atomic)
    out = ModelOutput(energy=energy, atomic_energies=atomic)
    pred = _from_edge_gradient(graph, out, vectors, edge_grad, True, stress)

    # the loss on leaves: its derivatives with respect to energies, forces and stress
    leaves = [pred.energy.requires_grad_(), pred.forces.requires_grad_()]
    if stress:
        leaves.append(pred.stress.requires_grad_())
    total = sum(loss_terms(pred, batch, loss, norm).values())
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    g_energy, g_forces = (
        torch.zeros_like(t) if g is None else g for g, t in zip(grads[:2], leaves[:2], strict=True)
    )
    seed = g_energy.index_select(0, graph.batch)  # a_i = ∂L/∂E_s(i)
    i, j = graph.edge_index[0], graph.edge_index[1]
    direction = g_forces.index_select(0, i) - g_forces.index_select(0, j)
    if stress and grads[2] is not None:
        periodic = graph.pbc.all(dim=1)
        volume = torch.where(periodic, torch.linalg.det(graph.cell).abs(), 1.0)
        g_stress = torch.nan_to_num(grads[2])
        m = 0.5 * (g_stress + g_stress.transpose(1, 2)) / volume[:, None, None]
        system = graph.batch.index_select(0, i)
        direction = direction + torch.einsum("ea,eab->eb", vectors, m.index_select(0, system))
    for t in leaves:
        t.requires_grad_(False)
    return _LossPart(float(total.detach()), pred, direction, seed, extra)


class _Extras:
    """The trainable terms of TrainingModel around the network (see module docstring)."""

    def __init__(self, model: TrainingModel, graph, run: SecondOrderPass):
        self.model, self.run = model, run
        self.atomic = torch.zeros_like(run.atomic_energies)
        self.edge_gradient = torch.zeros_like(run.edge_gradient)
        if model.e0_delta is not None:  # δ·mask: E0 given by the user stays fixed
            delta = (model.e0_delta * model.e0_mask).detach()
            self.atomic = self.atomic + delta.index_select(0, run.species)
        if model.shift_delta is not None:
            lengths = torch.linalg.vector_norm(run.vectors, dim=1)
            value, slope = model.envelope.value_and_derivative(lengths)
            inv_avg = 1.0 / model.config.avg_num_neighbors
            centre = graph.edge_index[0]
            self.rho = torch.zeros_like(self.atomic).index_add(0, centre, value * inv_avg)
            self.drho = (slope * inv_avg / lengths).unsqueeze(1) * run.vectors  # ∂ρ/∂r_e
            s = model.shift_delta.detach()
            self.atomic = self.atomic + s * self.rho
            self.edge_gradient = self.edge_gradient + s * self.drho

    def parameter_gradients(self, seed: Tensor, direction: Tensor) -> None:
        model = self.model
        if model.e0_delta is not None:
            g = torch.zeros_like(model.e0_delta).index_add(0, self.run.species, seed)
            _accumulate(model.e0_delta, g * model.e0_mask)
        if model.shift_delta is not None:
            g = (seed * self.rho).sum() + (direction * self.drho).sum()
            _accumulate(model.shift_delta, g)


def _accumulate(param: torch.nn.Parameter, grad: Tensor) -> None:
    if param.grad is None:
        param.grad = grad.detach().clone()
    else:
        param.grad.add_(grad.detach())


def _detached(pred: Prediction) -> Prediction:
    def d(t):
        return None if t is None else t.detach()

    return Prediction(
        d(pred.energy),
        d(pred.atomic_energies),
        d(pred.forces),
        d(pred.virial),
        d(pred.stress),
        outputs={k: v.detach() for k, v in pred.outputs.items()},
    )
