"""``equipot calibrate MODEL DATA --alpha 0.05``: calibrated uncertainties and force balls."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate a model's (or committee's) uncertainties on held-out data",
        description="Rescale the raw uncertainties of a model or committee on labelled "
        "calibration frames, then fit a split-conformal per-atom force-error radius "
        "R_i = q·σ_i with marginal coverage ≥ 1 − alpha for frames exchangeable with DATA. "
        "The result is stored in the model file (or --out); the calculator then returns "
        "force_radius. Models without an uncertainty fit are fitted first on their "
        "training data (--train, default: the file the model remembers).",
    )
    p.add_argument("model", type=Path, help="model or committee file (.eqp)")
    p.add_argument("data", help="labelled calibration frames (extxyz, rMD17 npz, ASE db)")
    p.add_argument("--alpha", type=float, default=0.05, help="miscoverage (default 0.05)")
    p.add_argument(
        "--score",
        default="auto",
        choices=["auto", "committee", "last-layer", "local", "latent"],
        help="per-atom σ_i of the ball (auto: the narrowest balls on the fit part)",
    )
    p.add_argument(
        "--fit-fraction",
        type=float,
        default=0.5,
        help="share of DATA that fits the scales and picks the score (rest: conformal)",
    )
    p.add_argument("--train", help="training frames for the uncertainty fit, if missing")
    p.add_argument(
        "--last-layer-forces",
        action="store_true",
        help="also calibrate last-layer force variances (D backward passes per frame)",
    )
    p.add_argument("--force-frames", type=int, default=100, help="frames for G's force rows")
    p.add_argument("--out", type=Path, help="write here instead of updating MODEL")
    p.add_argument("--seed", type=int, default=0, help="seed of the fit / conformal split")


def run(args: argparse.Namespace) -> int:
    from equipot.uq.workflow import calibrate_file

    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must lie in (0, 1), got {args.alpha}")
    out, report = calibrate_file(
        args.model,
        args.data,
        out=args.out,
        train=args.train,
        alpha=args.alpha,
        score=args.score,
        fit_fraction=args.fit_fraction,
        last_layer_forces=args.last_layer_forces,
        force_frames=args.force_frames,
        seed=args.seed,
    )
    ball = report["ball"]
    print(
        f"equipot calibrate: {report['conformal_frames']} conformal frames "
        f"({report['fit_frames']} for the fit); force ball R = {ball['quantile']:.4g}·"
        f"√(σ² + {ball['floor']:.3g}²) with σ = {ball['score']} score, "
        f"mean radius {1e3 * ball['mean_radius_eV_A']:.1f} meV/Å at {100 * (1 - args.alpha):g} %"
    )
    report_path = out.with_name(out.stem + ".calibration.json")
    report_path.write_text(json.dumps(report, indent=1))
    print(f"equipot calibrate: wrote {out} and {report_path}")
    return 0
