"""ASE calculator: a thin adapter over the energy model."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from equipot.geometry.edges import check_min_distance
from equipot.geometry.neighbors import neighbor_list
from equipot.graph import AtomicGraph
from equipot.model.builder import resolve_dtype
from equipot.model.energy_model import EnergyModel
from equipot.model.long_range import dipole_moment
from equipot.physics.derivatives import predict
from equipot.runtime import tune_allocator


def frozen_copy(model: EnergyModel, dtype: torch.dtype, device: torch.device | str) -> EnergyModel:
    """An inference copy: cast, on ``device``, eval mode, weights not requiring gradients."""
    frozen = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen.set_execution(kernels=True, memory_efficient=True)


def atoms_to_graph(
    atoms: Atoms, cutoff: float, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> AtomicGraph:
    """Validated graph of one structure (raises ``ValueError`` naming bad atoms / cells)."""
    positions = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    i, j, shifts = neighbor_list(positions, cell, pbc, cutoff)
    check_min_distance(positions, cell, i, j, shifts)
    n = len(atoms)
    as_tensor = torch.as_tensor
    return AtomicGraph(
        positions=as_tensor(positions, dtype=dtype, device=device),
        atomic_numbers=as_tensor(atoms.numbers, dtype=torch.int64, device=device),
        batch=torch.zeros(n, dtype=torch.int64, device=device),
        edge_index=as_tensor(np.stack([i, j]), dtype=torch.int64, device=device),
        edge_shift=as_tensor(shifts, dtype=dtype, device=device),
        cell=as_tensor(cell, dtype=dtype, device=device).unsqueeze(0),
        pbc=as_tensor(pbc, device=device).unsqueeze(0),
        n_atoms=torch.tensor([n], device=device),
        n_edges=torch.tensor([len(i)], device=device),
        cutoff=float(cutoff),
    )


class EquipotCalculator(Calculator):
    """ASE calculator for an equipot model (a model object or a path to a model file;
    ``head`` selects a head of a multi-head file, see :mod:`equipot.transfer.heads`).

    Properties: energy, free_energy, forces, energies (per atom) and, for 3D-periodic
    structures, stress (Voigt order, eV/Å³, ASE's sign convention). Models with long-range
    electrostatics add ``charges`` (e) and, for open systems, ``dipole`` = Σ q_i r_i (e·Å);
    the total charge is ``charge`` if given, else ``atoms.info["charge"]`` (or
    ``"total_charge"``), else the sum of the initial charges (0 by default).
    """

    implemented_properties = (
        "energy",
        "free_energy",
        "forces",
        "energies",
        "stress",
        "charges",
        "dipole",
    )

    def __init__(
        self,
        model: EnergyModel | str | Path,
        dtype: str | torch.dtype = "float64",
        device: str | torch.device = "cpu",
        head: str | None = None,
        charge: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.charge = charge
        tune_allocator()
        if isinstance(model, (str, Path)):
            from equipot.model.io import load_model

            model = load_model(model, head=head)
        elif head is not None:
            raise ValueError("head selects a head of a model file: pass a path, not a model")
        self.dtype = resolve_dtype(dtype)
        self.device = torch.device(device)
        self.model = frozen_copy(model, self.dtype, self.device)
        self.cutoff = model.config.r_max

    def check_state(self, atoms, tol=1e-15):
        """What changed since the last calculation: exact comparisons of the few properties
        the model reads (ASE's generic version compares everything with ``isclose``, which
        costs as much as a small-molecule evaluation)."""
        old = self.atoms
        if old is None or len(old) != len(atoms):
            return list(all_changes)
        checks = (
            ("positions", old.positions, atoms.positions),
            ("numbers", old.numbers, atoms.numbers),
            ("cell", old.cell.array, atoms.cell.array),
            ("pbc", old.pbc, atoms.pbc),
        )
        return [name for name, a, b in checks if not np.array_equal(a, b)]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        graph = atoms_to_graph(atoms, self.cutoff, self.dtype, self.device)
        if self.model.long_range is not None:
            graph = graph.replace(
                charge=graph.positions.new_tensor([total_charge(atoms, self.charge)])
            )
        want_stress = "stress" in properties and bool(atoms.pbc.all())
        if "stress" in properties and not want_stress:
            raise ValueError("stress is only defined for structures periodic in all 3 directions")
        with torch.enable_grad():
            pred = predict(self.model, graph, forces=True, stress=want_stress)
        energy = float(pred.energy[0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": pred.atomic_energies.detach().cpu().numpy().astype(np.float64),
            "forces": pred.forces.detach().cpu().numpy().astype(np.float64),
        }
        if want_stress:
            s = pred.stress[0].detach().cpu().numpy().astype(np.float64)
            self.results["stress"] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        if pred.charges is not None:
            charges = pred.charges.detach()
            self.results["charges"] = charges.cpu().numpy().astype(np.float64)
            if not atoms.pbc.any():
                dipole = dipole_moment(graph, charges)[0]
                self.results["dipole"] = dipole.cpu().numpy().astype(np.float64)


def total_charge(atoms: Atoms, charge: float | None = None) -> float:
    """The total charge of ``atoms`` in e (see :class:`EquipotCalculator`)."""
    if charge is not None:
        return float(charge)
    for key in ("charge", "total_charge"):
        if key in atoms.info:
            return float(atoms.info[key])
    return float(atoms.get_initial_charges().sum())
