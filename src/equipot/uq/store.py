"""What a model file holds about its own uncertainty: fits, calibration and the conformal ball.

Saved beside the weights (tensors under ``uq.``, numbers in the ``uncertainty`` JSON header),
so a model file stays data. Every part is optional: a freshly trained model has the latent fit
and the last-layer posterior; ``equipot calibrate`` adds the scales and the conformal radius.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from torch import Tensor

from equipot.uq.latent import LatentGaussian
from equipot.uq.llpr import LastLayerPosterior

PREFIX = "uq."
FORCE_SCORES = ("committee", "last-layer", "local", "latent")


@dataclass(frozen=True)
class ForceBall:
    """R_i = quantile·√(σ_i² + floor²), σ_i the per-atom ``score`` (uq/calibration.py)."""

    alpha: float
    quantile: float
    score: str  # one of FORCE_SCORES
    floor: float
    frames: int  # calibration frames behind the quantile

    def __post_init__(self) -> None:
        if self.score not in FORCE_SCORES:
            raise ValueError(f"unknown force score {self.score!r}; choose from {FORCE_SCORES}")


@dataclass(frozen=True)
class Uncertainty:
    latent: LatentGaussian | None = None
    posterior: LastLayerPosterior | None = None
    ball: ForceBall | None = None
    committee_energy_scale: float = 1.0  # variance factors for committee std (calibrated)
    committee_force_scale: float = 1.0

    def replace(self, **changes) -> Uncertainty:
        return replace(self, **changes)

    def tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.latent is not None:
            out |= self.latent.tensors(PREFIX + "latent.")
        if self.posterior is not None:
            out |= self.posterior.tensors(PREFIX + "posterior.")
        return {k: v.detach().contiguous().cpu() for k, v in out.items()}

    def metadata(self) -> str:
        return json.dumps(
            {
                "latent": None if self.latent is None else self.latent.metadata(),
                "posterior": None if self.posterior is None else self.posterior.metadata(),
                "ball": None if self.ball is None else asdict(self.ball),
                "committee_energy_scale": self.committee_energy_scale,
                "committee_force_scale": self.committee_force_scale,
            }
        )

    @classmethod
    def restore(cls, text: str | None, tensors: dict[str, Tensor]) -> Uncertainty | None:
        if not text:
            return None
        meta = json.loads(text)
        latent = meta.get("latent")
        posterior = meta.get("posterior")
        ball = meta.get("ball")
        return cls(
            latent=None
            if latent is None
            else LatentGaussian.restore(latent, tensors, PREFIX + "latent."),
            posterior=None
            if posterior is None
            else LastLayerPosterior.restore(posterior, tensors, PREFIX + "posterior."),
            ball=None if ball is None else ForceBall(**ball),
            committee_energy_scale=float(meta.get("committee_energy_scale", 1.0)),
            committee_force_scale=float(meta.get("committee_force_scale", 1.0)),
        )


def split_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(model weights, uncertainty tensors) of a model file's tensors."""
    weights = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    return weights, {k: v for k, v in state.items() if k.startswith(PREFIX)}
