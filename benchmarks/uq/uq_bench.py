"""Uncertainty figures (issue 13): conformal coverage, Spearman ρ, out-of-distribution AUROC.

    python benchmarks/uq/emt_data.py                      # EMT copper MD frames
    python benchmarks/uq/xtb_data.py                      # GFN2-xTB ethanol MD frames
    flock /work/coord/cpu.lock python benchmarks/uq/uq_bench.py --system emt   # or xtb

A committee of 4 (seeds 0–3, same config and data, ``train_committee``) is trained on the
in-distribution frames of MD run 0 only; member 0 is the single model whose last-layer and
latent-distance uncertainties are compared with the committee's. Held-out frames come from
independent MD runs (run 1):

* calibration / test: in-distribution frames of run 1 split at random into halves
  (exchangeable); balls calibrated on the first (its own fit / conformal halves), coverage
  on the second and, under shift, on the out-of-distribution sets;
* Spearman ρ between per-frame uncertainty and per-frame force RMSE on a mixed test set
  (half in-distribution test frames, half out-of-distribution frames);
* AUROC of in-distribution test frames against the ``ood`` set for each score.

Systems: ``emt`` — fcc Cu bulk at 300 / 600 / 900 K in distribution; (111) slab, vacancy and
liquid (2500 K) out of it, AUROC crystal vs liquid. ``xtb`` — ethanol at 300 K in
distribution; 600 K and 900 K out of it, AUROC 300 K vs 900 K.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from ase.io import read, write
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
SYSTEMS = {
    "emt": {
        "train": {"crystal-300": 120, "crystal-600": 120, "crystal-900": 120},
        "shifts": ("slab-600", "vacancy-600", "liquid-2500"),
        "ood": "liquid-2500",
        "model": {
            "r_max": 4.5,
            "l_max": 2,
            "channels": 16,
            "radial_hidden": [32, 32],
            "correlation": 2,
        },
    },
    "xtb": {
        "train": {"ethanol-300": 150},
        "shifts": ("ethanol-600", "ethanol-900"),
        "ood": "ethanol-900",
        "model": {
            "r_max": 5.0,
            "l_max": 2,
            "channels": 16,
            "radial_hidden": [32, 32],
            "correlation": 2,
        },
    },
}
SCORES = ("committee", "last-layer forces", "last-layer energy/atom", "latent distance")


def train_config(data: Path, out: Path, model: dict, epochs: int) -> dict:
    return {
        "seed": 0,
        "data": {"train": str(data), "valid_fraction": 0.1},
        "model": model,
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


def frame_scores(dc, ds, uq_c, uq_s) -> dict[str, np.ndarray]:
    post = uq_s.posterior
    energy = np.sqrt(
        post.energy_scale * (ds.phi**2 / (post.eig()[0].numpy() + post.regularizer)).sum(1)
    )
    return {
        "error committee": frame_force_rmse(dc),
        "error single": frame_force_rmse(ds),
        "committee": per_frame(sigma(dc, uq_c, "committee"), dc.frame),
        "last-layer forces": per_frame(sigma(ds, uq_s, "last-layer"), ds.frame),
        "last-layer energy/atom": energy / ds.num_atoms,
        "latent distance": per_frame(ds.latent, ds.frame, "mean"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    p.add_argument("--data", type=Path, default=None, help="default benchmarks/out/uq/<system>")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args()
    spec = SYSTEMS[args.system]
    data_dir = args.data or Path(f"benchmarks/out/uq/{args.system}")
    out = args.out or Path(f"benchmarks/out/uq/uq_{args.system}")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    log = {"system": args.system, "started": time.strftime("%Y-%m-%d %H:%M")}

    train_frames = []
    for name, count in spec["train"].items():
        train_frames += read(data_dir / f"{name}-0.extxyz", index=f":{count}")
    write(out / "train.extxyz", train_frames)
    start = time.perf_counter()
    config = train_config(out / "train.extxyz", out / "committee", spec["model"], args.epochs)
    train_committee(load_config(config), 4, verbose=False)
    log["train_s"] = time.perf_counter() - start
    members = [load_model(out / "committee" / f"member-{k}" / "best.eqp") for k in range(4)]
    single = members[0]

    held = []
    for name in spec["train"]:
        held += read(data_dir / f"{name}-1.extxyz", index=":")
    order = rng.permutation(len(held))
    sets = {
        "calib": [held[k] for k in order[: len(held) // 2]],
        "test": [held[k] for k in order[len(held) // 2 :]],
    }
    shifts = spec["shifts"]
    sets |= {name: read(data_dir / f"{name}-1.extxyz", index=":") for name in shifts}
    data_c = {k: collect_frames(members, v) for k, v in sets.items()}
    data_s = {k: collect_frames([single], v, last_layer_forces=True) for k, v in sets.items()}

    coverage = {}
    for score in ("committee", "last-layer", "local", "latent"):
        committee = score == "committee"
        data = data_c if committee else data_s
        rows = {}
        for alpha in ALPHAS:
            uq, _ = calibrated(
                data["calib"],
                None if committee else single.uncertainty,
                committee=committee,
                alpha=alpha,
                score=score,
            )
            rows[f"{100 * (1 - alpha):g}"] = {
                name: ball_coverage(data[name], uq) for name in ("test", *shifts)
            }
        coverage[score] = rows

    uq_c, _ = calibrated(data_c["calib"], None, committee=True, alpha=0.05, score="committee")
    uq_s, _ = calibrated(
        data_s["calib"], single.uncertainty, committee=False, alpha=0.05, score="last-layer"
    )
    scores = {n: frame_scores(data_c[n], data_s[n], uq_c, uq_s) for n in ("test", *shifts)}
    n_test = len(scores["test"]["committee"])
    per_shift = n_test // len(shifts)
    take = {"test": n_test} | {name: per_shift for name in shifts}
    picks = {n: rng.permutation(len(scores[n]["committee"]))[:k] for n, k in take.items()}
    spearman_rows, auc_rows = {}, {}
    for key in SCORES:
        error_key = "error committee" if key == "committee" else "error single"
        x = np.concatenate([scores[n][key][picks[n]] for n in take])
        y = np.concatenate([scores[n][error_key][picks[n]] for n in take])
        spearman_rows[key] = spearman(x, y)
        auc_rows[key] = auroc(scores["test"][key], scores[spec["ood"]][key])
    errors = {
        name: {
            "single_force_rmse": float(np.sqrt((data_s[name].force_error ** 2).mean())),
            "committee_force_rmse": float(np.sqrt((data_c[name].force_error ** 2).mean())),
        }
        for name in ("test", *shifts)
    }
    log.update(
        coverage=coverage,
        spearman=spearman_rows,
        auroc=auc_rows,
        ood=spec["ood"],
        mixed_set={n: int(k) for n, k in take.items()},
        errors=errors,
        finished=time.strftime("%Y-%m-%d %H:%M"),
    )
    (out / "uq.json").write_text(json.dumps(log, indent=1))
    report(log)


def report(log: dict) -> None:
    print(f"{log['system']}: force RMSE (meV/Å), single / committee mean:")
    for name, e in log["errors"].items():
        print(
            f"  {name:12s} {1e3 * e['single_force_rmse']:7.1f} / "
            f"{1e3 * e['committee_force_rmse']:7.1f}"
        )
    print("conformal coverage (per-frame average, %) at nominal 90 / 95 / 99 %:")
    for score, rows in log["coverage"].items():
        for name in log["errors"]:
            cells = " / ".join(f"{100 * rows[a][name]['coverage']:.1f}" for a in rows)
            radii = " / ".join(f"{1e3 * rows[a][name]['mean_radius']:.0f}" for a in rows)
            print(f"  {score:10s} {name:12s} {cells}   mean R {radii} meV/Å")
    print(f"Spearman ρ (mixed set {log['mixed_set']}) and AUROC (test vs {log['ood']}):")
    for key, rho in log["spearman"].items():
        print(f"  {key:24s} ρ = {rho:.3f}   AUROC = {log['auroc'][key]:.3f}")


if __name__ == "__main__":
    main()
