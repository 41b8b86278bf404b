"""Long-range electrostatics inside the energy function: E = E_local + E_lr(q).

Charges come from the model's final invariant features s_i (the scalars its readout reads):

* ``latent`` (LES-style, Cheng 2025): q̃_i = head(s_i), corrected per system so that
  Σ_i q_i = Q exactly, and E_lr = Coulomb energy of Gaussian charges q. Learned from energies
  and forces alone; no charge labels are needed. The excess Σ_j q̃_j − Q is taken back from
  the atoms in proportion to learned weights w_i = softplus(s_i·a) (``excess_charge:
  learned``): q_i = q̃_i − w_i (Σ_j q̃_j − Q) / Σ_j w_j. Spreading it uniformly (``uniform``,
  w_i = 1, the schema-2 behaviour) puts part of an ion's charge on every molecule of the
  system, so an ion and a distant neutral molecule repel at any separation; learned weights
  can keep the excess on the ion.
* ``qeq`` (4G-HDNNP style): electronegativities χ_i = head(s_i) and per-element hardnesses
  J_z > 0 define E_Qeq(q) (:mod:`equipot.electrostatics.qeq`); q minimises it at Σq = Q, so
  charge can flow across the whole system, and E_lr = E_Qeq(q).

Q is the system's total charge (``graph.charge``, 0 when absent). The energy goes into the
atomic energies (E_i = ½ k_e q_i φ_i, plus the Qeq terms), so forces, stress, Hessians, MD
and phonons need nothing new. Gaussian charges of pair width ``smearing`` (s = 1 Å, LES's
choice) keep E_lr smooth at short range; with no ``cutoff`` the Ewald split is η = s and the
whole sum is in reciprocal space (PME, or Ewald for small cells): no second neighbour list.
A ``cutoff`` ≤ r_max moves part of it to real space on the model's own edges (a coarser mesh).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from equipot.electrostatics import CoulombOptions, atomic_coulomb_energies
from equipot.electrostatics.qeq import equilibrate
from equipot.graph import AtomicGraph
from equipot.nn.linear import NormalizedSiLU, init_weight

HARDNESS_UNIT = 5.0  # eV/e², the initial hardness: J_z = HARDNESS_UNIT · softplus(θ_z)/ln 2


class LongRangeConfig(BaseModel):
    """How the model adds long-range electrostatics (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    charges: Literal["latent", "qeq"] = "latent"
    smearing: float = Field(1.0, gt=0.0, description="Gaussian pair width s, Å")
    kappa: float = Field(0.0, ge=0.0, description="Yukawa screening κ, 1/Å (0: Coulomb)")
    method: Literal["auto", "ewald", "pme"] = Field(
        "auto", description="periodic systems (open ones: direct sums)"
    )
    accuracy: float = Field(1e-5, gt=0.0, lt=1.0, description="relative size of dropped terms")
    cutoff: float | None = Field(None, gt=0.0, description="real-space cutoff, Å (≤ r_max)")
    order: Literal[4, 6, 8] = 6
    head_hidden: int | None = Field(16, ge=1, description="hidden width (None: linear head)")
    excess_charge: Literal["learned", "uniform"] = Field(
        "learned", description="latent charges: how Σq̃ − Q is taken back (module docstring)"
    )

    def coulomb_options(self) -> CoulombOptions:
        return CoulombOptions(
            method=self.method,
            smearing=self.smearing,
            kappa=self.kappa,
            accuracy=self.accuracy,
            cutoff=self.cutoff,
            order=self.order,
        )


@dataclass
class LongRangeOutput:
    atomic_energies: Tensor  # (N,) eV
    charges: Tensor  # (N,) e


class LongRange(nn.Module):
    def __init__(self, config: LongRangeConfig, channels: int, num_elements: int, r_max: float):
        super().__init__()
        if config.cutoff is not None and config.cutoff > r_max:
            raise ValueError(
                f"long_range.cutoff {config.cutoff} Å exceeds r_max {r_max} Å: the real-space "
                "part runs on the model's neighbour list"
            )
        self.config = config
        self.options = config.coulomb_options()
        sizes = [channels, 1] if config.head_hidden is None else [channels, config.head_hidden, 1]
        self.head = nn.ParameterList(
            [nn.Parameter(init_weight(a, b)) for a, b in itertools.pairwise(sizes)]
        )
        self.activation = NormalizedSiLU()
        self.hardness = (
            nn.Parameter(torch.zeros(num_elements, dtype=torch.float64))
            if config.charges == "qeq"
            else None
        )
        learned = config.charges == "latent" and config.excess_charge == "learned"
        # zero: w_i = ln 2 for every atom, the uniform correction, at initialisation
        self.excess_weight = (
            nn.Parameter(torch.zeros(channels, dtype=torch.float64)) if learned else None
        )

    def head_values(self, scalars: Tensor) -> Tensor:
        """q̃_i (latent) or χ_i (qeq) from the final invariant features (N, C) → (N,)."""
        x = scalars
        *hidden, last = self.head
        for w in hidden:
            x = self.activation(x @ w)
        return (x @ last).squeeze(1)

    def element_hardness(self, species_index: Tensor) -> Tensor:
        ln2 = torch.log(torch.tensor(2.0, dtype=self.hardness.dtype))
        return HARDNESS_UNIT * nn.functional.softplus(self.hardness)[species_index] / ln2

    def forward(
        self, graph: AtomicGraph, scalars: Tensor, species_index: Tensor
    ) -> LongRangeOutput:
        values = self.head_values(scalars)
        total = total_charge(graph, values.dtype)
        n_atoms = graph.n_atoms.tolist()
        if self.hardness is not None:
            charges, atomic = equilibrate(
                graph.positions,
                graph.cell,
                graph.pbc,
                n_atoms,
                values,
                self.element_hardness(species_index),
                total,
                self.options,
            )
            return LongRangeOutput(atomic_energies=atomic, charges=charges)
        charges = self.neutralise(graph, scalars, values, total)
        atomic = atomic_coulomb_energies(
            graph.positions,
            charges,
            graph.cell,
            graph.pbc,
            n_atoms,
            self.options,
            self._pairs(graph),
        )
        return LongRangeOutput(atomic_energies=atomic, charges=charges)

    def neutralise(
        self, graph: AtomicGraph, scalars: Tensor, values: Tensor, total: Tensor
    ) -> Tensor:
        """q_i = q̃_i − w_i (Σ_j q̃_j − Q_s) / Σ_j w_j over each system s (module docstring)."""
        excess = torch.zeros_like(total).index_add(0, graph.batch, values) - total
        if self.excess_weight is None:
            weights = torch.ones_like(values)
        else:
            weights = nn.functional.softplus(scalars @ self.excess_weight.to(scalars.dtype))
        norm = torch.zeros_like(total).index_add(0, graph.batch, weights)
        return values - weights * (excess / norm)[graph.batch]

    def _pairs(self, graph: AtomicGraph) -> tuple[Tensor, Tensor, Tensor] | None:
        """The model's edges for the real-space part (None: no real-space part)."""
        if self.config.cutoff is None:
            return None
        if graph.cutoff and graph.cutoff < self.config.cutoff - 1e-9:
            raise ValueError(
                f"graph built with cutoff {graph.cutoff} Å < long_range.cutoff "
                f"{self.config.cutoff} Å: real-space pairs would be missing"
            )
        distances = torch.linalg.vector_norm(graph.edge_vectors(), dim=1)
        return graph.edge_index[0], graph.edge_index[1], distances


@dataclass
class EngineLongRange:
    """The long-range term evaluated on the C++ engine's scalars (``on_engine_scalars``)."""

    atomic_energies: Tensor  # (N,)
    charges: Tensor  # (N,)
    scalar_gradient: Tensor | None = None  # ∂E_lr/∂s (N, C), seeded into the engine
    direct_gradient: tuple[Tensor, Tensor | None] | None = None  # ∂E_lr/∂r, ∂E_lr/∂ε


def on_engine_scalars(
    term: LongRange,
    graph: AtomicGraph,
    scalars: Tensor,
    species: Tensor,
    gradient: bool,
    strain: bool,
) -> EngineLongRange:
    """E_lr from the engine's last-layer scalars s_i (EnergyModel.inference_pass), with
    ∂E_lr/∂s (to seed the engine's backward pass) and the direct ∂E_lr/∂r and ∂E_lr/∂ε by
    autograd through the Coulomb sum alone."""
    from equipot.physics.derivatives import differentiable_inputs

    with torch.enable_grad():
        s = scalars.detach().requires_grad_(gradient)
        strained, inputs, _ = differentiable_inputs(graph, gradient, gradient and strain)
        out = term(strained, s, species)
        if not gradient:
            return EngineLongRange(out.atomic_energies.detach(), out.charges.detach())
        leaves = [s, *inputs]
        grads = torch.autograd.grad(out.atomic_energies.sum(), leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves, strict=True)]
    direct = (grads[1], grads[2] if strain else None)
    return EngineLongRange(
        out.atomic_energies.detach(), out.charges.detach(), grads[0].contiguous(), direct
    )


def total_charge(graph: AtomicGraph, dtype: torch.dtype) -> Tensor:
    """Q (S,) in e: ``graph.charge`` where the graph carries it, else neutral systems."""
    charge = getattr(graph, "charge", None)
    if charge is None:
        return torch.zeros(graph.num_systems, dtype=dtype, device=graph.device)
    return charge.to(dtype)


def dipole_moment(graph: AtomicGraph, charges: Tensor) -> Tensor:
    """μ_s = Σ_{i∈s} q_i r_i (S, 3) in e·Å, about the coordinate origin; NaN for periodic
    systems (a cell's dipole depends on the choice of cell and is not a property of it)."""
    moment = torch.zeros(graph.num_systems, 3, dtype=charges.dtype, device=charges.device)
    moment = moment.index_add(0, graph.batch, charges.unsqueeze(1) * graph.positions)
    return torch.where(graph.pbc.any(dim=1, keepdim=True), torch.nan, moment)
