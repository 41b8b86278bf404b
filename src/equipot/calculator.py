"""ASE calculator: a thin adapter over the energy model."""

from __future__ import annotations

import copy
from collections.abc import Sequence
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
from equipot.physics.fields import response_properties, response_results
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
    """ASE calculator for an equipot model (a model object or a path to a model file; ``head``
    selects a head of a multi-head file, see :mod:`equipot.transfer.heads`), or for a committee
    (a list of models / paths, or a committee file).

    Properties: energy, free_energy, forces, energies (per atom) and, for 3D-periodic
    structures, stress (Voigt order, eV/Å³, ASE's sign convention); committees give the
    member means. Models with long-range electrostatics add ``charges`` (e) and, for open
    systems, ``dipole`` = Σ q_i r_i (e·Å); the total charge is ``charge`` if given, else
    ``atoms.info["charge"]`` (or ``"total_charge"``), else the sum of the initial charges (0 by
    default). Models with tensor heads add ``dipole`` (e·Å), ``polarizability`` (e·Å²/V),
    ``born_effective_charges`` (N, 3, 3; e) and their other heads
    (:func:`equipot.physics.fields.response_properties`); ``efield`` (V/Å) applies a uniform
    field to energy, forces and those properties. Uncertainties, where the model or committee
    has what they need (:mod:`equipot.uq.estimate`): ``energy_std`` (eV), ``forces_std`` (N,)
    eV/Å (committees; single models with ``last_layer_forces=True``), ``energies_std`` (N,)
    eV, ``latent_distance`` (N,), ``force_radius`` (N,) eV/Å (calibrated conformal ball) and,
    for committees, ``member_energies`` (K,), ``member_forces`` (K, N, 3), ``member_stress``.
    """

    implemented_properties = ("energy", "free_energy", "forces", "energies", "stress")

    def __init__(
        self,
        model: EnergyModel | str | Path | Sequence[EnergyModel | str | Path],
        dtype: str | torch.dtype = "float64",
        device: str | torch.device = "cpu",
        head: str | None = None,
        efield=None,
        charge: float | None = None,
        *,
        last_layer_forces: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        from equipot.model.io import load_model
        from equipot.uq.committee import resolve_models
        from equipot.uq.estimate import UncertainPredictor

        self.charge = charge

        if head is not None:
            if not isinstance(model, (str, Path)):
                raise ValueError("head selects a head of a model file: pass a path, not a model")
            model = load_model(model, head=head)
        tune_allocator()
        members, committee_uq = resolve_models(model)
        self.dtype = resolve_dtype(dtype)
        self.device = torch.device(device)
        self.models = [frozen_copy(m, self.dtype, self.device) for m in members]
        self.model = self.models[0]
        self.cutoff = members[0].config.r_max
        self.predictor = UncertainPredictor(
            self.models, committee_uq, last_layer_forces=last_layer_forces
        )
        self.implemented_properties = EquipotCalculator.implemented_properties + tuple(
            self.predictor.available()
        )
        self.response = response_properties(self.model)
        self.implemented_properties = (*self.implemented_properties, *self.response)
        if self.model.long_range is not None:
            self.implemented_properties += ("charges", "dipole")
        self.efield = None if efield is None else np.asarray(efield, dtype=np.float64).reshape(3)
        heads = self.model.heads
        if self.efield is not None and (heads is None or not heads.couples_to_field):
            raise ValueError("efield needs a model with a 'dipole' or 'polarizability' head")
        if self.response and len(self.models) > 1:
            raise ValueError("committees of models with tensor heads are not supported")

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
        if self.efield is not None:
            graph = graph.replace(efield=graph.positions.new_tensor(self.efield[None]))
        if self.model.long_range is not None:
            graph = graph.replace(
                charge=graph.positions.new_tensor([total_charge(atoms, self.charge)])
            )
        want_stress = "stress" in properties and bool(atoms.pbc.all())
        if "stress" in properties and not want_stress:
            raise ValueError("stress is only defined for structures periodic in all 3 directions")
        with torch.enable_grad():
            out = self.predictor(graph, forces=True, stress=want_stress)
        pred = out.prediction
        energy = float(pred.energy[0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": _numpy(pred.atomic_energies),
            "forces": _numpy(pred.forces),
        }
        if want_stress:
            self.results["stress"] = _voigt(pred.stress[0])
        self.results |= uncertainty_results(out, want_stress)
        if pred.charges is not None:
            charges = pred.charges.detach()
            self.results["charges"] = _numpy(charges)
            if not atoms.pbc.any():
                self.results["dipole"] = _numpy(dipole_moment(graph, charges)[0])
        extra = [p for p in properties if p in self.response]
        if extra:
            with torch.enable_grad():
                values = response_results(self.model, graph, extra)
            self.results.update({k: _numpy(v) for k, v in values.items()})


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def _voigt(s: torch.Tensor) -> np.ndarray:
    return _numpy(s)[..., [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def uncertainty_results(out, stress: bool) -> dict:
    """The calculator's uncertainty keys from an :class:`UncertainPrediction` (one system)."""
    results = {}
    for key, value in (
        ("energy_std", out.energy_std),
        ("forces_std", out.forces_std),
        ("energies_std", out.atomic_energy_std),
        ("latent_distance", out.latent_distance),
        ("force_radius", out.force_radius),
    ):
        if value is not None:
            results[key] = float(value[0]) if key == "energy_std" else _numpy(value)
    if out.committee is not None:
        results["member_energies"] = _numpy(out.committee.stack("energy")[:, 0])
        results["member_forces"] = _numpy(out.committee.stack("forces"))
        if stress:
            results["member_stress"] = _voigt(out.committee.stack("stress")[:, 0])
    return results


def total_charge(atoms: Atoms, charge: float | None = None) -> float:
    """The total charge of ``atoms`` in e (see :class:`EquipotCalculator`)."""
    if charge is not None:
        return float(charge)
    for key in ("charge", "total_charge"):
        if key in atoms.info:
            return float(atoms.info[key])
    return float(atoms.get_initial_charges().sum())
