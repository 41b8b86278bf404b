"""Calibration on held-out data: last-layer λ and scales, committee scales, conformal balls.

The calibration frames are split at random (``fit_fraction``) into a *fit* part and a
*conformal* part. On the fit part:

* last-layer posterior: λ from a log-spaced grid and τ_E² (τ_F²) in closed form, maximising
  the Gaussian likelihood of the energy (and, with Jacobians, force-component) errors:
  τ² = ⟨e²/v(λ)⟩, λ = argmin [n log τ²(λ) + Σ log v(λ)];
* committee: s_E = ⟨ΔE²/v_E⟩, s_F = ⟨|ΔF_i|²/v_F,i⟩ (v: raw member variances);
* the per-atom score σ_i of the force ball (``committee``, ``last-layer``, ``local``,
  ``latent``; ``auto``: the smallest mean radius) and its floor β (σ_i ← √(σ_i² + β²)).

The conformal part then gives q̂ (:mod:`equipot.uq.conformal`), untouched by those choices,
so the coverage guarantee holds for frames exchangeable with the calibration frames.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from equipot.data.dataset import GraphDataset
from equipot.model.energy_model import EnergyModel
from equipot.physics.derivatives import predict
from equipot.uq.committee import committee_predict
from equipot.uq.conformal import conformal_quantile
from equipot.uq.llpr import feature_jacobian, system_features
from equipot.uq.store import FORCE_SCORES, ForceBall, Uncertainty

LAMBDA_GRID = 10.0 ** np.arange(-9.0, 3.01, 0.5)  # × mean eigenvalue of G
FLOOR_QUANTILES = (0.0, 0.05, 0.25, 0.5, 1.0)  # of σ_i on the fit part (0: no floor)


@dataclass
class CalibrationSet:
    """Errors and raw uncertainty ingredients of every frame (S) and atom (M)."""

    frame: np.ndarray  # (M,) frame of each atom
    num_atoms: np.ndarray  # (S,)
    energy_error: np.ndarray  # (S,) eV, prediction − reference
    force_error: np.ndarray  # (M, 3) eV/Å
    phi: np.ndarray | None = None  # (S, D) VᵀΦ_s (last-layer eigenbasis)
    local: np.ndarray | None = None  # (M, D) Vᵀφ̃_i
    jacobian: np.ndarray | None = None  # (M, 3, D) VᵀJ_ia
    latent: np.ndarray | None = None  # (M,) latent distance
    committee_energy: np.ndarray | None = None  # (S,) raw member variance
    committee_forces: np.ndarray | None = None  # (M,) raw Σ_a member variance

    def subset(self, frames: np.ndarray) -> CalibrationSet:
        keep_s = np.zeros(len(self.num_atoms), bool)
        keep_s[frames] = True
        keep_m = keep_s[self.frame]
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
            elif f.name in ("num_atoms", "energy_error", "phi", "committee_energy"):
                out[f.name] = value[keep_s]
            else:
                out[f.name] = value[keep_m]
        return CalibrationSet(**out)

    @property
    def num_frames(self) -> int:
        return len(self.num_atoms)


def collect(
    models: list[EnergyModel],
    dataset: GraphDataset,
    *,
    last_layer_forces: bool = False,
    batch_size: int = 16,
) -> CalibrationSet:
    """Evaluate ``models`` (inference copies; one model or a committee) on ``dataset``
    (complete labels, E0 included)."""
    parts: dict[str, list] = {f.name: [] for f in fields(CalibrationSet)}
    offset = 0
    single = len(models) == 1
    uq = models[0].uncertainty
    posterior = uq.posterior if single and uq is not None else None
    latents = [m.uncertainty.latent for m in models if m.uncertainty is not None]
    latents = [g for g in latents if g is not None]
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(np.arange(start, min(start + batch_size, len(dataset))))
        graph = batch.graph
        features = posterior is not None or bool(latents)
        with torch.enable_grad():
            if single:
                preds = [predict(models[0], graph, forces=True, features=features)]
                mean = preds[0]
            else:
                c = committee_predict(models, graph, features=features)
                preds, mean = c.members, c.mean
                parts["committee_energy"].append(c.energy_std.square().numpy())
                parts["committee_forces"].append(c.forces_std.square().numpy())
        parts["frame"].append(graph.batch.numpy() + offset)
        parts["num_atoms"].append(graph.n_atoms.numpy())
        parts["energy_error"].append((mean.energy - batch.energy).detach().numpy())
        parts["force_error"].append((mean.forces - batch.forces).detach().numpy())
        if posterior is not None:
            phi = preds[0].features.detach()
            parts["phi"].append(posterior.projected(system_features(phi, graph)).numpy())
            parts["local"].append(posterior.projected(phi).numpy())
            if last_layer_forces:
                jac = posterior.projected(feature_jacobian(models[0], graph))
                parts["jacobian"].append(jac.numpy())
        if latents:
            d = [
                m.uncertainty.latent.distance(p.features, graph.atomic_numbers)
                for m, p in zip(models, preds, strict=True)
                if m.uncertainty is not None and m.uncertainty.latent is not None
            ]
            parts["latent"].append(torch.stack(d).mean(0).numpy())
        offset += graph.num_systems
    return CalibrationSet(**{k: np.concatenate(v) if v else None for k, v in parts.items()})


def _raw_variance(projected: np.ndarray, eigenvalues: np.ndarray, lam: float) -> np.ndarray:
    return (projected**2 / (eigenvalues + lam)).sum(-1)


def _fit_scale(errors2: np.ndarray, variance: np.ndarray) -> tuple[float, float]:
    """(τ², negative log likelihood) of errors with variances τ²·v."""
    v = np.maximum(variance, 1e-300)
    tau2 = float(np.mean(errors2 / v))
    return tau2, float(len(v) * np.log(max(tau2, 1e-300)) + np.log(v).sum())


def fit_posterior(data: CalibrationSet, eigenvalues: np.ndarray) -> dict:
    """λ, τ_E², τ_F² on ``data`` (module docstring)."""
    mean_g = max(float(eigenvalues.mean()), 1e-30)
    best = None
    for factor in LAMBDA_GRID:
        lam = factor * mean_g
        tau_e, nll = _fit_scale(data.energy_error**2, _raw_variance(data.phi, eigenvalues, lam))
        tau_f = tau_e
        if data.jacobian is not None:
            var_f = _raw_variance(data.jacobian, eigenvalues, lam).ravel()
            tau_f, nll_f = _fit_scale(data.force_error.ravel() ** 2, var_f)
            nll += nll_f
        if best is None or nll < best[0]:
            best = (nll, lam, tau_e, tau_f)
    _, lam, tau_e, tau_f = best
    return {"regularizer": lam, "energy_scale": tau_e, "force_scale": tau_f}


def scores(data: CalibrationSet, uq: Uncertainty | None, committee: dict | None) -> dict:
    """σ_i (M,) of every available force score, with the fitted scales."""
    out = {}
    if committee is not None and data.committee_forces is not None:
        out["committee"] = np.sqrt(committee["force_scale"] * data.committee_forces)
    post = None if uq is None else uq.posterior
    if post is not None and data.local is not None:
        g = post.eig()[0].numpy()
        out["local"] = np.sqrt(post.energy_scale * _raw_variance(data.local, g, post.regularizer))
        if data.jacobian is not None:
            var = _raw_variance(data.jacobian, g, post.regularizer).sum(1)
            out["last-layer"] = np.sqrt(post.force_scale * var)
    if data.latent is not None:
        out["latent"] = data.latent
    return out


def _best_floor(sigma, error, frames, alpha) -> tuple[float, float]:
    """(β, mean radius on these frames) for the floor with the narrowest balls."""
    best = (np.inf, 0.0)
    for quantile in FLOOR_QUANTILES:
        floor = float(np.quantile(sigma, quantile)) if quantile else 0.0
        s = np.sqrt(sigma**2 + floor**2)
        if not np.all(s > 0):
            continue
        q = conformal_quantile(error / s, frames, alpha)
        width = float(np.mean(q * s))
        if width < best[0]:
            best = (width, floor)
    return best[1], best[0]


def calibrate(
    data: CalibrationSet,
    uq: Uncertainty | None,
    *,
    committee: bool = False,
    alpha: float = 0.05,
    score: str = "auto",
    fit_fraction: float = 0.5,
    seed: int = 0,
) -> tuple[Uncertainty, dict]:
    """Calibrated uncertainty data (the model's ``uq`` updated, or a committee's) and a
    report of what was chosen (module docstring)."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must lie in (0, 1), got {fit_fraction}")
    n = data.num_frames
    order = np.random.default_rng(seed).permutation(n)
    n_fit = round(fit_fraction * n)
    if n_fit < 2 or n - n_fit < 2:
        raise ValueError(f"calibration needs more frames (got {n})")
    fit, conf = data.subset(np.sort(order[:n_fit])), data.subset(np.sort(order[n_fit:]))
    uq = uq or Uncertainty()
    report: dict = {"frames": n, "fit_frames": n_fit, "conformal_frames": n - n_fit}
    committee_scales = None
    if committee:
        v_e, v_f = fit.committee_energy, fit.committee_forces
        s_e = float(np.mean(fit.energy_error**2 / np.maximum(v_e, 1e-300)))
        s_f = float(np.mean((fit.force_error**2).sum(1) / np.maximum(v_f, 1e-300)))
        committee_scales = {"energy_scale": s_e, "force_scale": s_f}
        uq = uq.replace(committee_energy_scale=s_e, committee_force_scale=s_f)
        report["committee"] = committee_scales
    elif uq.posterior is not None and fit.phi is not None:
        chosen = fit_posterior(fit, uq.posterior.eig()[0].numpy())
        uq = uq.replace(posterior=uq.posterior.with_(**chosen))
        report["last_layer"] = chosen
    fit_scores = scores(fit, uq, committee_scales)
    if score != "auto":
        if score not in FORCE_SCORES:
            raise ValueError(f"unknown score {score!r}; choose from auto, {FORCE_SCORES}")
        if score not in fit_scores:
            raise ValueError(f"score {score!r} is not available for this model / data")
        fit_scores = {score: fit_scores[score]}
    if not fit_scores:
        raise ValueError("no uncertainty score available: fit the model's uncertainty first")
    fit_err = np.linalg.norm(fit.force_error, axis=1)
    widths = {}
    for name, sigma in fit_scores.items():
        widths[name] = _best_floor(sigma, fit_err, fit.frame, alpha)
    name = min(widths, key=lambda k: widths[k][1])
    floor = widths[name][0]
    sigma = scores(conf, uq, committee_scales)[name]
    s = np.sqrt(sigma**2 + floor**2)
    conf_err = np.linalg.norm(conf.force_error, axis=1)
    q = conformal_quantile(conf_err / s, conf.frame, alpha)
    ball = ForceBall(alpha=alpha, quantile=q, score=name, floor=floor, frames=n - n_fit)
    report["ball"] = {
        "score": name,
        "floor": floor,
        "quantile": q,
        "mean_radius_eV_A": float(np.mean(q * s)),
        "mean_radius_fit_by_score": {k: v[1] for k, v in widths.items()},
    }
    return uq.replace(ball=ball), report
