"""Fit and calibrate uncertainties of saved models: after training and in ``equipot calibrate``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from equipot.calculator import frozen_copy
from equipot.data.cache import open_cache
from equipot.data.dataset import GraphDataset
from equipot.data.readers import DataSource
from equipot.data.statistics import check_dataset_elements
from equipot.model.energy_model import EnergyModel
from equipot.model.io import read_model_metadata
from equipot.uq.calibration import calibrate, collect
from equipot.uq.fit import fit_uncertainty
from equipot.uq.store import Uncertainty


def training_options(path: str | Path) -> dict:
    """What a model file remembers of its training: data source and loss weights (or {})."""
    try:
        extra = json.loads(read_model_metadata(path).get("extra", "{}"))
    except (ValueError, FileNotFoundError):
        return {}
    config = extra.get("train_config") or {}
    loss = config.get("loss", {})
    return {
        "train": (config.get("data") or {}).get("train"),
        "energy_weight": loss.get("energy_weight", 1.0),
        "forces_weight": loss.get("forces_weight", 100.0),
        "element_weights": loss.get("element_weights") or {},
    }


def open_dataset(source, model: EnergyModel, cache_dir: Path) -> GraphDataset:
    source = source if isinstance(source, DataSource) else DataSource.model_validate(source)
    path = open_cache(source, model.config.r_max, cache_dir)
    dataset = GraphDataset(path, name=str(source.path))
    check_dataset_elements(dataset, model.config.elements)
    return dataset


def fit_model(
    model: EnergyModel,
    train: GraphDataset,
    options: dict,
    *,
    force_frames: int = 100,
    progress: bool = False,
) -> EnergyModel:
    """``model`` with latent Gaussians and last-layer posterior fitted on ``train`` (kept:
    a calibration already in the model is replaced by the new fit's defaults)."""
    model.uncertainty = fit_uncertainty(
        model,
        train,
        energy_weight=options.get("energy_weight", 1.0),
        forces_weight=options.get("forces_weight", 100.0),
        element_weights=options.get("element_weights"),
        force_frames=force_frames,
        progress=progress,
    )
    return model


def calibrate_models(
    members: list[EnergyModel],
    committee_uq: Uncertainty | None,
    dataset: GraphDataset,
    *,
    alpha: float = 0.05,
    score: str = "auto",
    fit_fraction: float = 0.5,
    last_layer_forces: bool = False,
    seed: int = 0,
) -> tuple[Uncertainty, dict]:
    """Calibrated uncertainty for one model (its own data updated) or a committee."""
    frozen = [frozen_copy(m, torch.float64, "cpu") for m in members]
    want_jacobian = last_layer_forces or score == "last-layer"
    data = collect(frozen, dataset, last_layer_forces=want_jacobian and len(members) == 1)
    start = committee_uq if len(members) > 1 else members[0].uncertainty
    return calibrate(
        data,
        start,
        committee=len(members) > 1,
        alpha=alpha,
        score=score,
        fit_fraction=fit_fraction,
        seed=seed,
    )


def attach_after_training(
    model_path: Path, train: GraphDataset, valid: GraphDataset, options: dict, settings
) -> dict:
    """Fit on the training split, calibrate on the validation split, save into the file."""
    from equipot.model.io import load_model
    from equipot.transfer.heads import stored_heads

    extra = json.loads(read_model_metadata(model_path).get("extra", "{}"))
    head_name, heads = stored_heads(model_path)  # a multi-head file keeps its other heads
    model = fit_model(load_model(model_path), train, options, force_frames=settings.force_frames)
    report: dict = {"skipped": f"validation split of {len(valid)} frames: not calibrated"}
    if len(valid) >= 4:
        try:
            model.uncertainty, report = calibrate_models(
                [model], None, valid, alpha=settings.alpha, fit_fraction=0.5
            )
        except ValueError as exc:  # too few frames for a ball: keep the uncalibrated fit
            report = {"skipped": str(exc)}
    model.save(model_path, extra=extra, heads=heads, head_name=head_name)
    return report


def calibrate_file(
    model_path: Path,
    data: str | Path | DataSource,
    *,
    out: Path | None = None,
    train: str | Path | None = None,
    alpha: float = 0.05,
    score: str = "auto",
    fit_fraction: float = 0.5,
    last_layer_forces: bool = False,
    force_frames: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Path, dict]:
    """``equipot calibrate``: fit what is missing (needs training data), calibrate, save."""
    from equipot.model.io import load_model
    from equipot.uq.committee import is_committee_file, load_committee, save_committee

    model_path = Path(model_path)
    committee = is_committee_file(model_path)
    if committee:
        members, committee_uq = load_committee(model_path)
        extra = {}
    else:
        members, committee_uq = [load_model(model_path)], None
        extra = json.loads(read_model_metadata(model_path).get("extra", "{}"))
    options = training_options(model_path) if not committee else {}
    train_source = train or options.get("train")
    with tempfile.TemporaryDirectory(prefix="equipot-calibrate-") as tmp:
        missing = [m for m in members if m.uncertainty is None or m.uncertainty.latent is None]
        if missing and not committee:
            if train_source is None:
                raise ValueError(
                    f"{model_path} has no uncertainty fit and does not name its training data: "
                    "pass --train DATA (the frames it was trained on)"
                )
            train_set = open_dataset(train_source, members[0], Path(tmp) / "train")
            fit_model(members[0], train_set, options, force_frames=force_frames, progress=progress)
        elif missing and train is not None:
            train_set = open_dataset(train, members[0], Path(tmp) / "train")
            for m in missing:
                fit_model(m, train_set, {}, force_frames=force_frames, progress=progress)
        dataset = open_dataset(
            data if not isinstance(data, Path) else str(data), members[0], Path(tmp) / "data"
        )
        uq, report = calibrate_models(
            members,
            committee_uq,
            dataset,
            alpha=alpha,
            score=score,
            fit_fraction=fit_fraction,
            last_layer_forces=last_layer_forces,
            seed=seed,
        )
    out = Path(out or model_path)
    if committee:
        save_committee(members, out, uq)
    else:
        from equipot.transfer.heads import stored_heads

        members[0].uncertainty = uq
        head_name, heads = stored_heads(model_path)
        members[0].save(out, extra=extra, heads=heads, head_name=head_name)
    return out, report
