"""Everything that derives from the energy: forces, virial/stress, Hessians, HVPs.

With a symmetric strain ε applied to the cell and the positions of system s,

    r'_i = r_i (1 + ε_s),   cell'_s = cell_s (1 + ε_s)

every edge vector becomes r'_ij = r_ij (1 + ε_s), so one backward pass of E gives

    F_i = −∂E/∂r_i,     W_s = −∂E/∂ε_s (virial),     σ_s = (1/V_s) ∂E/∂ε_s   (ASE's sign)

Equivalently, from the gradient g_e = ∂E/∂r_e of every edge vector r_e = r_j − r_i + S·cell,

    ∂E/∂r_i = Σ_{e: j_e = i} g_e − Σ_{e: i_e = i} g_e,      ∂E/∂ε_s = sym Σ_{e ∈ s} r_e ⊗ g_e

which is how frozen models on the CPU deliver them (their whole-model inference pass returns
g_e, :mod:`equipot.model.inference`); the tests check both routes against each other.
No layer of the model contains force code; these are the only derivative formulas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from equipot.graph import AtomicGraph
from equipot.model.second_order import hessian_vectors


@dataclass
class Prediction:
    energy: Tensor  # (S,) eV
    atomic_energies: Tensor  # (N,) eV
    forces: Tensor | None = None  # (N, 3) eV/Å
    virial: Tensor | None = None  # (S, 3, 3) eV
    stress: Tensor | None = None  # (S, 3, 3) eV/Å³, NaN for systems that are not 3D periodic
    features: Tensor | None = None  # (N, D) readout features (EnergyModel.forward), if asked
    outputs: dict[str, Tensor] = field(default_factory=dict)  # tensor heads (model.heads)
    charges: Tensor | None = None  # (N,) e, models with long-range electrostatics


def predict(
    model: torch.nn.Module,
    graph: AtomicGraph,
    *,
    forces: bool = True,
    stress: bool = False,
    create_graph: bool = False,
    features: bool = False,
    born_charges: bool = False,
) -> Prediction:
    """Energy and, by autograd, forces and virial/stress. ``create_graph`` for training;
    ``features`` also returns the model's per-atom readout features (``EnergyModel``).

    ``outputs`` holds the model's tensor heads (and a long-range model's ``charges`` and
    ``dipole``, which training can fit, train/labels.py); ``born_charges`` adds ``outputs["bec"]`` =
    ∂μ/∂r_i of its dipole head (:mod:`equipot.physics.fields`; for training on Born charges).
    """
    options = {"features": True} if features else {}
    if not create_graph and not born_charges and (forces or stress):
        fused = getattr(model, "inference_pass", None)
        result = fused(graph, strain=stress, **options) if fused is not None else None
        if result is not None:
            out, vectors, edge_grad = result
            return _from_edge_gradient(graph, out, vectors, edge_grad, forces, stress)
    strained, inputs, strain = differentiable_inputs(graph, forces or born_charges, stress)
    out = model(strained, **options)
    result = Prediction(
        energy=out.energy,
        atomic_energies=out.atomic_energies,
        charges=getattr(out, "charges", None),
    )
    result.features = out.features if features else None
    result.outputs = dict(getattr(out, "outputs", {}))
    if result.charges is not None:
        result.outputs = _charge_outputs(strained, result.charges) | result.outputs
    if born_charges:
        from equipot.physics.fields import dipole_derivative

        result.outputs["bec"] = dipole_derivative(out.outputs["dipole"], inputs[0], create_graph)
    if not inputs:
        return result
    grads = torch.autograd.grad(
        out.energy.sum(), inputs, create_graph=create_graph, allow_unused=True
    )
    if forces:
        result.forces = -_zeros_if_none(grads[0], inputs[0])
    if stress:
        _set_stress(result, graph, _zeros_if_none(grads[-1], strain))
    return result


def differentiable_inputs(
    graph: AtomicGraph, positions: bool, strain: bool
) -> tuple[AtomicGraph, list[Tensor], Tensor | None]:
    """The graph with leaf positions (N, 3) and a symmetric strain (S, 3, 3) applied, the
    leaves that require gradients ([positions][, strain]), and the strain leaf."""
    r = graph.positions
    cell = graph.cell
    inputs = []
    if positions or strain:
        r = r.detach().requires_grad_(True)
        inputs.append(r)
    epsilon = None
    if strain:
        epsilon = torch.zeros_like(cell, requires_grad=True)
        inputs.append(epsilon)
        symmetric = 0.5 * (epsilon + epsilon.transpose(1, 2))
        deformation = torch.eye(3, dtype=cell.dtype, device=cell.device) + symmetric
        r = torch.einsum("ni,nij->nj", r, deformation[graph.batch])
        cell = cell @ deformation
    return graph.replace(positions=r, cell=cell), inputs, epsilon


def _set_stress(result: Prediction, graph: AtomicGraph, dE_de: Tensor) -> None:
    result.virial = -dE_de
    volume = torch.linalg.det(graph.cell).abs()
    periodic = graph.pbc.all(dim=1)
    safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
    stress_tensor = dE_de / safe_volume[:, None, None]
    result.stress = torch.where(periodic[:, None, None], stress_tensor, torch.nan)


def _from_edge_gradient(
    graph: AtomicGraph, out, vectors: Tensor, edge_grad: Tensor, forces: bool, stress: bool
) -> Prediction:
    """Forces and virial/stress from g_e = ∂E/∂r_e (module docstring)."""
    result = Prediction(
        energy=out.energy,
        atomic_energies=out.atomic_energies,
        features=out.features,
        charges=out.charges,
    )
    direct = out.direct_gradient  # (∂E/∂r, ∂E/∂ε) not through the edges (long range)
    i, j = graph.edge_index[0], graph.edge_index[1]
    if forces:
        result.forces = torch.zeros_like(graph.positions).index_add_(0, i, edge_grad)
        result.forces.index_add_(0, j, edge_grad, alpha=-1.0)
        if direct is not None:
            result.forces -= direct[0]
    if stress:
        outer = vectors.unsqueeze(2) * edge_grad.unsqueeze(1)  # (E, 3, 3): r_a g_b
        if graph.num_systems == 1:
            dE_de = outer.sum(0, keepdim=True)
        else:
            dE_de = outer.new_zeros(graph.num_systems, 3, 3)
            dE_de.index_add_(0, graph.batch.index_select(0, i), outer)
        if direct is not None and direct[1] is not None:
            dE_de = dE_de + direct[1]
        _set_stress(result, graph, 0.5 * (dE_de + dE_de.transpose(1, 2)))
    if out.charges is not None:
        result.outputs = _charge_outputs(graph, out.charges)
    return result


def member_predictions(
    graph: AtomicGraph,
    outs: list,
    vectors: Tensor,
    edge_grads: Tensor | None,
    forces: bool,
    stress: bool,
) -> list[Prediction]:
    """:func:`_from_edge_gradient` for K models on one graph at once: ``outs`` their outputs,
    ``edge_grads`` (E, K, 3) their g_e (``equipot.model.engine_pass.committee_pass``)."""
    result = [
        Prediction(energy=o.energy, atomic_energies=o.atomic_energies, features=o.features)
        for o in outs
    ]
    i, j = graph.edge_index[0], graph.edge_index[1]
    if forces:
        f = edge_grads.new_zeros(graph.num_atoms, len(outs), 3).index_add_(0, i, edge_grads)
        f.index_add_(0, j, edge_grads, alpha=-1.0)
        for k, r in enumerate(result):
            r.forces = f[:, k]
    if stress:
        outer = vectors[:, None, :, None] * edge_grads[:, :, None, :]  # (E, K, 3, 3)
        if graph.num_systems == 1:
            dE_de = outer.sum(0, keepdim=True)
        else:
            dE_de = outer.new_zeros(graph.num_systems, *outer.shape[1:])
            dE_de.index_add_(0, graph.batch.index_select(0, i), outer)
        for k, r in enumerate(result):
            _set_stress(r, graph, 0.5 * (dE_de[:, k] + dE_de[:, k].transpose(1, 2)))
    return result


def _charge_outputs(graph: AtomicGraph, charges: Tensor) -> dict[str, Tensor]:
    """A long-range model's charges (N, 1) and dipole μ = Σ q_i r_i (S, 3) as outputs, which
    training can fit (train/labels.py); a head of the same name takes precedence."""
    from equipot.model.long_range import dipole_moment

    return {"charges": charges.unsqueeze(1), "dipole": dipole_moment(graph, charges)}


def _zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def hessian_vector_product(model: torch.nn.Module, graph: AtomicGraph, vectors: Tensor) -> Tensor:
    """H·v for a batch of displacement vectors v (B, N, 3) → (B, N, 3), eV/Å².

    Costs one forward and one double backward per call, independent of N: use it (e.g. in
    Lanczos) when the dense (3N)² Hessian would not fit. Frozen models on the CPU take the
    second-order C++ engine (:func:`equipot.model.second_order.hessian_vectors`).
    """
    single = vectors.ndim == 2
    if single:
        vectors = vectors.unsqueeze(0)
    out = hessian_vectors(model, graph, vectors.detach())  # the C++ engine, where it applies
    if out is not None:
        return out[0] if single else out
    positions = graph.positions.detach().requires_grad_(True)
    energy = model(graph.replace(positions=positions)).energy.sum()
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=True)
    rows = [
        torch.autograd.grad(gradient, positions, grad_outputs=v, retain_graph=True)[0]
        for v in vectors
    ]
    out = torch.stack(rows)
    return out[0] if single else out


def hessian_from_graph(model: torch.nn.Module, graph: AtomicGraph, chunk: int = 64) -> Tensor:
    """Dense Hessian ∂²E/∂r∂r, shape (3N, 3N), exact (symmetric up to rounding): 3N
    Hessian-vector products, by the C++ engine for frozen models on the CPU, else autograd."""
    n3 = 3 * graph.num_atoms
    eye = torch.eye(n3, dtype=graph.dtype, device=graph.device)
    fused = hessian_vectors(model, graph, eye.view(n3, -1, 3))
    if fused is not None:
        return fused.reshape(n3, n3)
    positions = graph.positions.detach().requires_grad_(True)
    energy = model(graph.replace(positions=positions)).energy.sum()
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=True)
    gradient = gradient.reshape(-1)
    rows = []
    for start in range(0, n3, chunk):
        block = eye[start : start + chunk]
        (h,) = torch.autograd.grad(
            gradient, positions, grad_outputs=block, retain_graph=True, is_grads_batched=True
        )
        rows.append(h.reshape(block.shape[0], n3))
    return torch.cat(rows)
