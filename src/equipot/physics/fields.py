"""Response to a uniform electric field ℰ, by autograd of the field-dependent energy.

A model with a ``dipole`` (and ``polarizability``) head has E(r; ℰ) = E(r) − μ(r)·ℰ
− ½ ℰ·α(r)·ℰ (:mod:`equipot.model.heads.collection`); ℰ is the graph's ``efield`` (S, 3):

    μ_ind = −∂E/∂ℰ                    induced dipole, e·Å        (= μ + α ℰ)
    α     = −∂²E/∂ℰ∂ℰ                 polarisability, e·Å²/V
    F_i   = −∂E/∂r_i                  forces in the field, eV/Å  (include Z*_iᵀ ℰ)
    Z*_i  = ∂F_i/∂ℰ = ∂μ_ind/∂r_i     Born effective charges, e:  Z*_i[a, b] = ∂μ_a/∂r_ib

Units: ℰ in V/Å, so ℰ·μ is in eV. For periodic cells μ is the dipole of the cell for the
positions as given (defined up to a polarisation quantum); its derivatives — Born charges,
forces in a field, the polarisability — are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from ase import units
from torch import Tensor

from equipot.graph import AtomicGraph

# ε₀ in e/(V·Å): ε = 1 + α/(ε₀ Ω) with α in e·Å²/V and Ω in Å³; α/(4πε₀) is in Å³.
EPSILON_0 = units._eps0 / units._e * 1e-10
POLARIZABILITY_TO_A3 = 1.0 / (4.0 * torch.pi * EPSILON_0)


@dataclass
class FieldResponse:
    energy: Tensor  # (S,) eV
    dipole: Tensor  # (S, 3) e·Å, −∂E/∂ℰ at the graph's field
    polarizability: Tensor | None = None  # (S, 3, 3) e·Å²/V
    born_charges: Tensor | None = None  # (N, 3, 3) e, [atom, dipole component, displacement]
    forces: Tensor | None = None  # (N, 3) eV/Å
    outputs: dict[str, Tensor] = field(default_factory=dict)  # every head's output


def couples_to_field(model: torch.nn.Module) -> bool:
    """Whether the model's energy depends on an applied field (a dipole/polarizability head)."""
    inner = getattr(model, "net", model)  # a training wrapper holds the model as ``net``
    heads = getattr(inner, "heads", None)
    return heads is not None and heads.couples_to_field


def field_response(
    model: torch.nn.Module,
    graph: AtomicGraph,
    *,
    polarizability: bool = True,
    born_charges: bool = True,
    forces: bool = False,
    create_graph: bool = False,
) -> FieldResponse:
    """μ, α, Z* (and forces) of every system of ``graph`` at its field (module docstring)."""
    if not couples_to_field(model):
        raise ValueError(
            "this model's energy does not depend on an electric field: it needs a 'dipole' "
            "(and for the polarisability a 'polarizability') head"
        )
    efield = graph.efield.detach().clone().requires_grad_(True)
    positions = graph.positions.detach().requires_grad_(born_charges or forces)
    out = model(graph.replace(positions=positions, efield=efield))
    inputs = [efield] + ([positions] if forces else [])
    second = polarizability or born_charges
    grads = torch.autograd.grad(
        out.energy.sum(), inputs, create_graph=second or create_graph, allow_unused=True
    )
    dipole = -_or_zeros(grads[0], efield)
    result = FieldResponse(energy=out.energy, dipole=dipole, outputs=out.outputs)
    if forces:
        result.forces = -_or_zeros(grads[1], positions)
    if not second:
        return result
    wanted = ([efield] if polarizability else []) + ([positions] if born_charges else [])
    rows: list[list[Tensor]] = [[] for _ in wanted]
    for a in range(3):
        if not dipole.requires_grad:  # μ independent of r and ℰ
            parts = [torch.zeros_like(t) for t in wanted]
        else:
            parts = torch.autograd.grad(
                dipole[:, a].sum(),
                wanted,
                retain_graph=True,
                create_graph=create_graph,
                allow_unused=True,
            )
        for row, part, like in zip(rows, parts, wanted, strict=True):
            row.append(_or_zeros(part, like))
    if polarizability:
        result.polarizability = torch.stack(rows[0], dim=1)  # (S, a, b) = ∂μ_a/∂ℰ_b
    if born_charges:
        result.born_charges = torch.stack(rows[-1], dim=1)  # (N, a, b) = ∂μ_a/∂r_ib
    return result


def dipole_derivative(dipole: Tensor, positions: Tensor, create_graph: bool) -> Tensor:
    """Z*_i[a, b] = ∂μ_a/∂r_ib (N, 3, 3) of dipoles (S, 3) computed from leaf ``positions``
    (the computation graph is kept for later derivatives)."""
    rows = [
        _or_zeros(
            torch.autograd.grad(
                dipole[:, a].sum(),
                positions,
                retain_graph=True,
                create_graph=create_graph,
                allow_unused=True,
            )[0],
            positions,
        )
        for a in range(3)
    ]
    return torch.stack(rows, dim=1)


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


RESPONSE_PROPERTIES = ("dipole", "polarizability", "born_effective_charges")


def response_properties(model: torch.nn.Module) -> list[str]:
    """Calculator properties the model offers beyond energy, forces and stress: ``dipole``,
    ``polarizability``, ``born_effective_charges`` (from ∂μ/∂r, or a ``bec`` head),
    ``charges`` (a dipole head's own) and every other head under its name."""
    heads = getattr(model, "heads", None)
    if heads is None:
        return []
    names = list(heads.heads)
    props = [p for p in ("dipole", "polarizability") if p in names]
    if "dipole" in names or "bec" in names:
        props.append("born_effective_charges")
    if "dipole" in names and "bec" in names:
        props.append("bec")  # then the learned one under its own name
    props += [n for n in names if n not in ("dipole", "polarizability", "bec")]
    if any(h.config.charges for h in heads.heads.values()):
        props.append("charges")
    return props


def response_results(
    model: torch.nn.Module, graph: AtomicGraph, properties: list[str]
) -> dict[str, Tensor]:
    """The requested head properties of a one-system graph (detached; see
    :func:`response_properties`). Born charges come from ∂μ/∂r when the model has a dipole
    head, else from its ``bec`` head."""
    coupled = couples_to_field(model)
    want_bec = "born_effective_charges" in properties
    if coupled:
        r = field_response(
            model,
            graph,
            polarizability="polarizability" in properties,
            born_charges=want_bec and "dipole" in model.heads.heads,
        )
        outputs = dict(r.outputs)
        outputs["dipole"] = r.dipole
        if r.polarizability is not None:
            outputs["polarizability"] = r.polarizability
        if r.born_charges is not None:
            outputs["born_effective_charges"] = r.born_charges
    else:
        outputs = dict(model(graph).outputs)
    if want_bec and "born_effective_charges" not in outputs:
        outputs["born_effective_charges"] = outputs["bec"]
    results = {}
    for name in properties:
        head = model.heads.heads[name] if name in model.heads.heads else None
        per_system = head is not None and head.config.per == "system"
        results[name] = outputs[name].detach()[0] if per_system else outputs[name].detach()
    return results
