"""Fixed charges as an energy function of a graph, so that :func:`equipot.predict`,
:func:`equipot.hessian` and the simulation engine give their forces, stress and Hessians."""

from __future__ import annotations

import torch
from ase.data import atomic_numbers
from torch import Tensor, nn

from equipot.electrostatics.energy import CoulombOptions, atomic_coulomb_energies
from equipot.graph import AtomicGraph


class FixedCharges(nn.Module):
    """E = Coulomb energy of charges fixed per element (``{"Na": 1.0, "Cl": -1.0}``).

    ``options`` are :class:`~equipot.electrostatics.CoulombOptions` fields. Returns the
    model interface (``energy`` (S,), ``atomic_energies`` (N,)), so it plugs into ``predict``.
    """

    def __init__(self, charges: dict[str, float], **options):
        super().__init__()
        table = torch.full((119,), float("nan"), dtype=torch.float64)
        for element, q in charges.items():
            if element not in atomic_numbers:
                raise ValueError(f"unknown chemical element {element!r} in charges")
            table[atomic_numbers[element]] = float(q)
        self.register_buffer("table", table, persistent=False)
        self.options = CoulombOptions(**options)

    def charges(self, graph: AtomicGraph) -> Tensor:
        q = self.table[graph.atomic_numbers].to(graph.dtype)
        if not bool(torch.isfinite(q).all()):
            bad = int(torch.nonzero(~torch.isfinite(q))[0])
            raise ValueError(f"atom {bad} (Z={int(graph.atomic_numbers[bad])}) has no charge")
        return q

    def forward(self, graph: AtomicGraph):
        from equipot.model.energy_model import ModelOutput

        atomic = atomic_coulomb_energies(
            graph.positions,
            self.charges(graph),
            graph.cell,
            graph.pbc,
            graph.n_atoms.tolist(),
            self.options,
        )
        energy = torch.zeros(graph.num_systems, dtype=atomic.dtype, device=atomic.device)
        return ModelOutput(energy=energy.index_add(0, graph.batch, atomic), atomic_energies=atomic)
