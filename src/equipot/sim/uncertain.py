"""Uncertainty-aware MD: a potential that also returns uncertainties, and alarms on them.

:class:`UncertainPotential` is a :class:`~equipot.sim.potentials.ModelPotential` for one model
or a committee whose calls also evaluate the model's uncertainties
(:class:`~equipot.uq.estimate.UncertainPredictor`) and keep them as ``last``. For committees
the integrator moves on the member-mean forces; Hessians (``--timestep auto``) use member 0.

:class:`Alarm` checks every step: the largest conformal force radius R_i (eV/Å) and / or the
largest latent distance d_i of each system against thresholds. On ``stop`` the run ends
after writing the offending frame; on ``write`` the frame is appended to the alarm file (at
most every ``min_gap`` steps per system) and the run continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from equipot.calculator import frozen_copy
from equipot.sim.potentials import ModelPotential, PotentialOutput
from equipot.sim.state import SimState
from equipot.uq.committee import resolve_models
from equipot.uq.estimate import UncertainPrediction, UncertainPredictor
from equipot.uq.store import Uncertainty

ACTIONS = ("stop", "write")


class UncertainPotential(ModelPotential):
    def __init__(
        self,
        models,
        committee_uncertainty: Uncertainty | None = None,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device = "cpu",
        skin: float = 1.0,
        efield=None,
    ):
        """``models``: a model, a model / committee file, or a list of members (with the
        committee's calibration ``committee_uncertainty``); ``efield`` as for
        :class:`~equipot.sim.potentials.ModelPotential`."""
        members, committee_uq = resolve_models(models)
        committee_uq = committee_uncertainty or committee_uq
        super().__init__(members[0], dtype=dtype, device=device, skin=skin, efield=efield)
        self.members = [self.model] + [frozen_copy(m, self.dtype, self.device) for m in members[1:]]
        self.predictor = UncertainPredictor(self.members, committee_uq)
        self.last: UncertainPrediction | None = None
        self.last_systems: Tensor | None = None

    def __call__(self, state: SimState, *, stress: bool = False) -> PotentialOutput:
        graph = self.graph(state)
        with torch.enable_grad():
            out = self.predictor(graph, forces=True, stress=stress)
        self.last, self.last_systems = out, graph.batch
        pred, dt = out.prediction, state.dtype
        return PotentialOutput(
            energy=pred.energy.detach().to(dt),
            forces=pred.forces.detach().to(dt),
            stress=pred.stress.detach().to(dt) if stress else None,
        )

    def system_maxima(self) -> dict[str, np.ndarray]:
        """Per-system largest force radius / latent distance and energy std of the last call
        (only the quantities the model provides)."""
        out, batch = self.last, self.last_systems
        if out is None:
            return {}
        systems = int(out.prediction.energy.shape[0])
        columns = {}
        if out.energy_std is not None:
            columns["energy_std_eV"] = out.energy_std.detach().double().cpu().numpy()
        for key, value in (
            ("max_force_radius_eV_A", out.force_radius),
            ("max_latent_distance", out.latent_distance),
            ("max_forces_std_eV_A", out.forces_std),
        ):
            if value is not None:
                v = value.detach().double().cpu()
                m = torch.full((systems,), -torch.inf, dtype=torch.float64)
                m = m.scatter_reduce(0, batch.cpu(), v, reduce="amax")
                columns[key] = m.numpy()
        return columns

    def per_atom(self) -> dict[str, np.ndarray]:
        out = self.last
        arrays = {}
        for key, value in (
            ("force_radius", out.force_radius),
            ("latent_distance", out.latent_distance),
            ("forces_std", out.forces_std),
        ):
            if value is not None:
                arrays[key] = value.detach().double().cpu().numpy()
        return arrays


@dataclass
class Alarm:
    """Thresholds on the per-system maxima, and what to do when one is exceeded."""

    max_force_radius: float | None = None  # eV/Å
    max_latent_distance: float | None = None
    action: str = "stop"
    path: Path | None = None  # offending frames (extxyz)
    min_gap: int = 10  # steps between two written frames of one system ("write")
    events: list[dict] = field(default_factory=list)
    _last_written: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown alarm action {self.action!r}; choose from {ACTIONS}")
        if self.max_force_radius is None and self.max_latent_distance is None:
            raise ValueError("an alarm needs max_force_radius and / or max_latent_distance")

    def check(self, potential: UncertainPotential) -> list[tuple[int, str, float]]:
        """(system, quantity, value) for every threshold exceeded at the last call."""
        maxima = potential.system_maxima()
        hits = []
        for key, limit in (
            ("max_force_radius_eV_A", self.max_force_radius),
            ("max_latent_distance", self.max_latent_distance),
        ):
            if limit is None:
                continue
            if key not in maxima:
                what = "calibrated force ball" if "radius" in key else "latent-space fit"
                raise ValueError(
                    f"the alarm on {key} needs a model with a {what} (see equipot calibrate)"
                )
            for s in np.flatnonzero(maxima[key] > limit):
                hits.append((int(s), key, float(maxima[key][s])))
        return hits

    def handle(self, state: SimState, potential: UncertainPotential, step: int, time_fs: float):
        """Record and write this step's alarms; True if the run must stop."""
        hits = self.check(potential)
        if not hits:
            return False
        systems = sorted({s for s, _, _ in hits})
        due = [
            s
            for s in systems
            if self.action == "stop" or step - self._last_written.get(s, -(10**9)) >= self.min_gap
        ]
        for s, key, value in hits:
            self.events.append({"step": step, "time_fs": time_fs, "system": s, key: value})
        if due and self.path is not None:
            self._write(state, potential, due, step, time_fs)
        return self.action == "stop"

    def _write(self, state, potential, systems, step, time_fs) -> None:
        from ase.io import write

        atoms_list = state.to_atoms()
        arrays = potential.per_atom()
        index = state.system_idx.cpu().numpy()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            for s in systems:
                atoms = atoms_list[s]
                for key, values in arrays.items():
                    atoms.arrays[key] = values[index == s]
                atoms.info.update(step=step, time_fs=time_fs, system=s, alarm=True)
                write(f, atoms, format="extxyz")
                self._last_written[s] = step
