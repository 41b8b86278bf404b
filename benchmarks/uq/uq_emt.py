"""Uncertainty figures on EMT copper (issue 13): conformal coverage, Spearman ρ, OOD AUROC.

    python benchmarks/uq/emt_data.py --out benchmarks/out/uq/emt
    flock /work/coord/cpu.lock python benchmarks/uq/uq_emt.py --data benchmarks/out/uq/emt

A committee of 4 (seeds 0–3, same config and data) is trained on crystal frames only (fcc
bulk at 300 / 600 / 900 K, independent MD run 0); member 0 is the single model whose
last-layer and latent-distance uncertainties are compared with the committee's. Held-out
frames come from independent runs (run 1):

* calibration / test: crystal frames of run 1, split at random into halves (exchangeable);
  balls calibrated on the first (its own fit / conformal halves), coverage on the second
  and, under shift, on slab, vacancy and liquid frames;
* Spearman ρ between per-frame uncertainty and per-frame force RMSE on a mixed test set
  (test crystal frames + slab + vacancy + liquid);
* AUROC of crystal (test) vs liquid frames for each score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from ase.io import read
from common import (
    auroc,
    ball_coverage,
    calibrated,
    collect_frames,
    frame_force_rmse,
    per_frame,
    sigma,
    spearman,
)

from equipot.model.io import load_model
from equipot.train import load_config
from equipot.train.ensemble import train_committee

ALPHAS = (0.10, 0.05, 0.01)
SHIFTS = ("slab-600", "vacancy-600", "liquid-2500")


def train_config(data: Path, out: Path, epochs: int) -> dict:
    return {
        "seed": 0,
        "data": {"train": str(data), "valid_fraction": 0.1},
        "model": {
            "r_max": 4.5,
            "l_max": 2,
            "channels": 16,
            "radial_hidden": [32, 32],
            "correlation": 2,
        },
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0},
        "optim": {
            "lr": 0.01,
            "batch_size": 4,
            "max_epochs": epochs,
            "scheduler": "cosine",
            "min_lr": 1e-4,
        },
        "output": {"dir": str(out), "progress": False, "plot": True},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("benchmarks/out/uq/emt"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/uq/emt_run"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--train-frames", type=int, default=120, help="per temperature")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    log = {"started": time.strftime("%Y-%m-%d %H:%M")}

    train_frames = []
    for t in (300, 600, 900):
        train_frames += read(args.data / f"crystal-{t}-0.extxyz", index=f":{args.train_frames}")
    train_file = args.out / "train.extxyz"
    from ase.io import write

    write(train_file, train_frames)
    start = time.perf_counter()
    train_committee(load_config(train_config(train_file, args.out / "committee", args.epochs)), 4)
    log["train_s"] = time.perf_counter() - start
    members = [load_model(args.out / "committee" / f"member-{k}" / "best.eqp") for k in range(4)]
    single = members[0]

    held = []
    for t in (300, 600, 900):
        held += read(args.data / f"crystal-{t}-1.extxyz", index=":")
    order = rng.permutation(len(held))
    calib = [held[k] for k in order[: len(held) // 2]]
    test = [held[k] for k in order[len(held) // 2 :]]
    shifted = {name: read(args.data / f"{name}-1.extxyz", index=":") for name in SHIFTS}

    sets = {"calib": calib, "test": test, **shifted}
    data_c = {k: collect_frames(members, v) for k, v in sets.items()}
    data_s = {k: collect_frames([single], v, last_layer_forces=True) for k, v in sets.items()}

    # ------------------------------------------------------------ conformal coverage
    coverage = {}
    for score, committee in (
        ("committee", True),
        ("last-layer", False),
        ("local", False),
        ("latent", False),
    ):
        data = data_c if committee else data_s
        start_uq = None if committee else single.uncertainty
        rows = {}
        for alpha in ALPHAS:
            uq, _ = calibrated(
                data["calib"], start_uq, committee=committee, alpha=alpha, score=score
            )
            rows[f"{100 * (1 - alpha):g}"] = {
                name: ball_coverage(data[name], uq) for name in ("test", *SHIFTS)
            }
        coverage[score] = rows

    # ------------------------------------------------------------ Spearman ρ (mixed set)
    uq_c, _ = calibrated(data_c["calib"], None, committee=True, alpha=0.05, score="committee")
    uq_s, _ = calibrated(
        data_s["calib"], single.uncertainty, committee=False, alpha=0.05, score="last-layer"
    )
    mixed_names = ("test", *SHIFTS)
    spearman_rows, auc_rows = {}, {}
    frame_scores = {}
    for name in mixed_names:
        dc, ds = data_c[name], data_s[name]
        frame_scores[name] = {
            "error_committee_mean": frame_force_rmse(dc),
            "error_single": frame_force_rmse(ds),
            "committee": per_frame(sigma(dc, uq_c, "committee"), dc.frame),
            "last-layer forces": per_frame(sigma(ds, uq_s, "last-layer"), ds.frame),
            "last-layer energy/atom": np.sqrt(
                uq_s.posterior.energy_scale
                * (ds.phi**2 / (uq_s.posterior.eig()[0].numpy() + uq_s.posterior.regularizer)).sum(
                    1
                )
            )
            / ds.num_atoms,
            "latent distance": per_frame(ds.latent, ds.frame, "mean"),
        }
    take = {"test": 150, "slab-600": 50, "vacancy-600": 50, "liquid-2500": 50}
    picks = {
        name: rng.permutation(len(frame_scores[name]["committee"]))[:n] for name, n in take.items()
    }
    for key in ("committee", "last-layer forces", "last-layer energy/atom", "latent distance"):
        error_key = "error_committee_mean" if key == "committee" else "error_single"
        x = np.concatenate([frame_scores[n][key][picks[n]] for n in take])
        y = np.concatenate([frame_scores[n][error_key][picks[n]] for n in take])
        spearman_rows[key] = spearman(x, y)
        auc_rows[key] = auroc(frame_scores["test"][key], frame_scores["liquid-2500"][key])
    errors = {
        name: {
            "single_force_rmse": float(np.sqrt((data_s[name].force_error ** 2).mean())),
            "committee_force_rmse": float(np.sqrt((data_c[name].force_error ** 2).mean())),
        }
        for name in mixed_names
    }
    log.update(
        coverage=coverage,
        spearman=spearman_rows,
        auroc_liquid_vs_crystal=auc_rows,
        errors=errors,
        finished=time.strftime("%Y-%m-%d %H:%M"),
    )
    (args.out / "uq_emt.json").write_text(json.dumps(log, indent=1))
    report(log)


def report(log: dict) -> None:
    print("force RMSE (meV/Å), single / committee mean:")
    for name, e in log["errors"].items():
        print(
            f"  {name:12s} {1e3 * e['single_force_rmse']:7.1f} / "
            f"{1e3 * e['committee_force_rmse']:7.1f}"
        )
    print("conformal coverage (per-frame average) at nominal 90 / 95 / 99 %:")
    for score, rows in log["coverage"].items():
        for name in ("test", *SHIFTS):
            cells = " / ".join(f"{100 * rows[a][name]['coverage']:.1f}" for a in rows)
            radii = " / ".join(f"{1e3 * rows[a][name]['mean_radius']:.0f}" for a in rows)
            print(f"  {score:10s} {name:12s} {cells}   mean R {radii} meV/Å")
    print("Spearman ρ (mixed set) and AUROC (crystal vs liquid):")
    for key, rho in log["spearman"].items():
        print(f"  {key:24s} ρ = {rho:.3f}   AUROC = {log['auroc_liquid_vs_crystal'][key]:.3f}")


if __name__ == "__main__":
    main()
