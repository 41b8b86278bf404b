"""Predictions with uncertainties: one model or a committee, with whatever the files hold.

:class:`UncertainPredictor` is what the calculator, the MD alarms and ``equipot learn`` call:

* ``energy_std`` (S,): committee std, or the last-layer σ(E_s) of a single model;
* ``forces_std`` (N,): committee per-atom norm of the force std, or (``last_layer_forces``)
  the last-layer √Σ_a σ²(F_ia) (D extra backward passes);
* ``atomic_energy_std`` (N,): last-layer σ(E_i) of the atomic energies (single model);
* ``latent_distance`` (N,): Mahalanobis distance of the readout features (mean over members);
* ``force_radius`` (N,): the calibrated conformal ball R_i = q̂·σ_i (see uq/conformal.py).

Quantities whose fits are missing from the file are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from equipot.graph import AtomicGraph
from equipot.model.energy_model import EnergyModel
from equipot.physics.derivatives import Prediction, predict
from equipot.uq.committee import CommitteePrediction, check_members, committee_predict
from equipot.uq.llpr import feature_jacobian, system_features
from equipot.uq.local_scores import LocalScores
from equipot.uq.store import ForceBall, Uncertainty


@dataclass
class UncertainPrediction:
    prediction: Prediction  # (the committee mean for committees)
    energy_std: Tensor | None = None
    forces_std: Tensor | None = None
    atomic_energy_std: Tensor | None = None
    latent_distance: Tensor | None = None
    force_sigma: Tensor | None = None  # σ_i behind the ball, floor included
    force_radius: Tensor | None = None
    committee: CommitteePrediction | None = None


def ball_radius(ball: ForceBall, out: UncertainPrediction) -> tuple[Tensor, Tensor]:
    """(σ_i, R_i) of the conformal ball from the score it was calibrated with."""
    score = {
        "committee": out.forces_std,
        "last-layer": out.forces_std,
        "local": out.atomic_energy_std,
        "latent": out.latent_distance,
    }[ball.score]
    if score is None:
        raise ValueError(f"the force ball needs the {ball.score!r} score, which is not available")
    sigma = (score.double().square() + ball.floor**2).sqrt()
    return sigma, ball.quantile * sigma


class UncertainPredictor:
    """Energies, forces (stress) and uncertainties of one model or a committee (module
    docstring). ``models`` are used as given (pass inference copies for speed)."""

    def __init__(
        self,
        models: list[EnergyModel],
        uncertainty: Uncertainty | None = None,
        *,
        last_layer_forces: bool = False,
    ):
        if len(models) > 1:
            check_members(models)
        self.models = models
        if uncertainty is None and len(models) == 1:
            uncertainty = models[0].uncertainty
        self.uncertainty = uncertainty
        ball = None if self.uncertainty is None else self.uncertainty.ball
        if ball is not None and ball.score == "committee" and len(models) == 1:
            raise ValueError("the force ball was calibrated for a committee; give all members")
        self.last_layer_forces = last_layer_forces or (
            ball is not None and ball.score == "last-layer"
        )
        self._local_scores: LocalScores | None = None
        self._member_scores: dict[int, tuple[Uncertainty, LocalScores]] = {}

    def _folded(self, uq: Uncertainty | None) -> LocalScores | None:
        """The one-product path for one model (uq/local_scores.py), rebuilt when the model's
        uncertainty is replaced (e.g. by a calibration)."""
        if self.is_committee or self.last_layer_forces or uq is not self.uncertainty:
            return None
        if not LocalScores.applies(uq):
            return None
        if self._local_scores is None or self._local_scores.uncertainty is not uq:
            self._local_scores = LocalScores(uq)
        return self._local_scores

    def _member_distance(
        self, k: int, model: EnergyModel, features: Tensor, graph: AtomicGraph
    ) -> Tensor:
        """Member k's latent distance d_i: its latent fit alone, folded (uq/local_scores.py;
        rebuilt when the member's uncertainty is replaced), or the general path where the
        fold does not fit."""
        uq = model.uncertainty
        cached = self._member_scores.get(k)
        if cached is None or cached[0] is not uq:
            cached = (uq, LocalScores(Uncertainty(latent=uq.latent)))
            self._member_scores[k] = cached
        scores = cached[1]
        if scores.fits(graph.num_atoms):
            return scores(features, graph)["latent_distance"]
        return uq.latent.distance(features, graph.atomic_numbers)

    def available(self) -> list[str]:
        """The calculator's uncertainty keys this predictor fills (see the calculator)."""
        posterior = any(
            m.uncertainty is not None and m.uncertainty.posterior is not None for m in self.models
        )
        latent = any(
            m.uncertainty is not None and m.uncertainty.latent is not None for m in self.models
        )
        single = not self.is_committee
        keys = {
            "energy_std": self.is_committee or posterior,
            "forces_std": self.is_committee or (posterior and self.last_layer_forces),
            "energies_std": single and posterior,
            "latent_distance": latent,
            "force_radius": self.uncertainty is not None and self.uncertainty.ball is not None,
            "member_energies": self.is_committee,
            "member_forces": self.is_committee,
            "member_stress": self.is_committee,
        }
        return [k for k, v in keys.items() if v]

    @property
    def is_committee(self) -> bool:
        return len(self.models) > 1

    def _wants_features(self, model: EnergyModel) -> bool:
        uq = model.uncertainty
        return uq is not None and (uq.latent is not None or uq.posterior is not None)

    def __call__(
        self, graph: AtomicGraph, *, forces: bool = True, stress: bool = False
    ) -> UncertainPrediction:
        features = any(self._wants_features(m) for m in self.models)
        if self.is_committee:
            uq = self.uncertainty or Uncertainty()
            c = committee_predict(
                self.models,
                graph,
                forces=forces,
                stress=stress,
                features=features,
                energy_scale=uq.committee_energy_scale,
                force_scale=uq.committee_force_scale,
            )
            out = UncertainPrediction(
                c.mean, energy_std=c.energy_std, forces_std=c.forces_std, committee=c
            )
            distances = [
                self._member_distance(k, m, p.features, graph)
                for k, (m, p) in enumerate(zip(self.models, c.members, strict=True))
                if m.uncertainty is not None and m.uncertainty.latent is not None
            ]
            if distances:
                out.latent_distance = torch.stack(distances).mean(0)
        else:
            model = self.models[0]
            pred = predict(model, graph, forces=forces, stress=stress, features=features)
            out = UncertainPrediction(pred)
            uq = model.uncertainty
            folded = self._folded(uq)
            if folded is not None and folded.fits(graph.num_atoms):
                for key, value in folded(pred.features, graph).items():
                    if forces or key not in ("force_sigma", "force_radius"):
                        setattr(out, key, value)
                return out
            if uq is not None and uq.posterior is not None:
                post = uq.posterior
                phi = pred.features.detach()
                out.energy_std = post.energy_variance(system_features(phi, graph)).sqrt()
                out.atomic_energy_std = post.energy_variance(phi).sqrt()
                if self.last_layer_forces:
                    jac = feature_jacobian(model, graph)
                    out.forces_std = post.force_variance(jac).sum(1).sqrt()
            if uq is not None and uq.latent is not None:
                out.latent_distance = uq.latent.distance(pred.features, graph.atomic_numbers)
        ball = None if self.uncertainty is None else self.uncertainty.ball
        if ball is not None and forces:
            out.force_sigma, out.force_radius = ball_radius(ball, out)
        return out
