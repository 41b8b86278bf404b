"""Where a local model fails: local vs long-range models on GFN2-xTB dimers and clusters.

Every variant trains on the same frames (``long_range_data.py``: charged and polar dimers
from contact to 20 Å, an ion in a water cluster) with the same architecture (r_max 5 Å) and
the same wall-clock budget, one after the other; then all are evaluated on the held-out
binding curves (three fixed orientations per dimer) and clusters:

* binding-curve error |E_bind − E_bind^xTB| with E_bind(d) = E_AB(d) − E_A − E_B, for
  configurations whose closest intermolecular atoms are beyond r_max (where the local model
  sees two isolated molecules) and beyond 8 Å;
* R² of the model's charges against xTB's (no variant here is trained on charges);
* dipole MAE of Σ q_i r_i against xTB's dipole on the neutral held-out molecules
  (variants with ``+dipole`` also train on dipoles);
* energy and force MAE on all held-out frames.

    flock /work/coord/cpu.lock python benchmarks/long_range.py --budget-min 10

Writes ``benchmarks/out/long_range/results.json``, ``binding_curves.png`` and
``long_range.md`` (the table for RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

R_MAX = 5.0
ARCHITECTURE = {
    "r_max": R_MAX,
    "l_max": 2,
    "channels": 32,
    "num_layers": 2,
    "correlation": 3,
    "radial_hidden": [32, 32],
}
VARIANTS = {
    "local": {},
    "latent": {"long_range": {"charges": "latent"}},
    "qeq": {"long_range": {"charges": "qeq"}},
    "latent+dipole": {"long_range": {"charges": "latent"}, "dipole_weight": 10.0},
    "qeq+dipole": {"long_range": {"charges": "qeq"}, "dipole_weight": 10.0},
}


def read_labelled(path) -> list:
    """Frames of an extxyz file with their reference labels in ``info`` / ``arrays``: ASE ≥ 3.29
    moves ``energy``, ``forces``, ``dipole`` … of the file into a SinglePointCalculator."""
    from ase.io import read

    frames = read(path, ":")
    for atoms in frames:
        results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        for key, value in results.items():
            if key in ("forces", "charges") or np.ndim(value) == 2:
                atoms.arrays.setdefault(key, np.asarray(value))
            else:
                atoms.info.setdefault(key, value)
    return frames


def config_for(
    variant: str, data: Path, out: Path, budget_min: float, seed: int, threads: int = 2
) -> dict:
    spec = VARIANTS[variant]
    train = {"path": str(data / "train.xyz")}
    loss = {"energy_weight": 1.0, "forces_weight": 10.0, "kind": "mse"}
    if spec.get("dipole_weight"):
        train["labels"] = {"dipole": {"per": "system", "rank": 1}}
        loss["label_weights"] = {"dipole": spec["dipole_weight"]}
    model = dict(ARCHITECTURE)
    if "long_range" in spec:
        model["long_range"] = spec["long_range"]
    return {
        "seed": seed,
        "dtype": "float64",
        "num_threads": threads,
        "data": {"train": train, "valid_fraction": 0.1, "split_seed": seed},
        "model": model,
        "loss": loss,
        "optim": {
            "lr": 0.01,
            "batch_size": 8,
            "max_epochs": 100000,
            "max_time_min": budget_min,
            "scheduler": "cosine",
            "ema_decay": 0.99,
        },
        "output": {"dir": str(out / variant), "progress": False, "plot": True},
    }


def train_variant(
    variant: str, data: Path, out: Path, budget_min: float, seed: int, threads: int = 2
) -> Path:
    from equipot.train import load_config, train

    run = out / variant
    if run.exists():
        shutil.rmtree(run)
    config = load_config(config_for(variant, data, out, budget_min, seed, threads))
    start = time.perf_counter()
    result = train(config, verbose=True)
    print(f"{variant}: {result.results['epochs']} epochs in {time.perf_counter() - start:.0f} s")
    return result.best_model


def predictions(model_path: Path, frames: list, threads: int = 2) -> list[dict]:
    import torch

    import equipot

    torch.set_num_threads(threads)
    calc = equipot.EquipotCalculator(model_path)
    out = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        row = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if calc.model.long_range is not None:
            row["charges"] = atoms.get_charges()
            row["dipole"] = atoms.get_dipole_moment()
        out.append(row)
    return out


def min_intermolecular(atoms) -> float:
    n = int(atoms.info["first_size"])
    d = np.linalg.norm(atoms.positions[:n, None] - atoms.positions[None, n:], axis=-1)
    return float(d.min())


def evaluate(frames: list, pred: list[dict]) -> dict:
    monomer = {
        a.info["pair"]: p["energy"]
        for a, p in zip(frames, pred, strict=True)
        if a.info["role"] == "monomer"
    }
    monomer_ref = {a.info["pair"]: a.info["energy"] for a in frames if a.info["role"] == "monomer"}
    rows = []
    for atoms, p in zip(frames, pred, strict=True):
        if atoms.info["role"] != "curve":
            continue
        a, b = atoms.info["pair"].split("...")
        rows.append(
            {
                "pair": atoms.info["pair"],
                "orientation": int(atoms.info["orientation"]),
                "d": float(atoms.info["d"]),
                "d_min": min_intermolecular(atoms),
                "bind_ref": atoms.info["energy"] - monomer_ref[a] - monomer_ref[b],
                "bind": p["energy"] - monomer[a] - monomer[b],
            }
        )
    errors = np.array([abs(r["bind"] - r["bind_ref"]) for r in rows])
    d_min = np.array([r["d_min"] for r in rows])
    result = {
        "curves": rows,
        "bind_mae_beyond_rmax_meV": 1e3 * float(errors[d_min > R_MAX].mean()),
        "bind_max_beyond_rmax_meV": 1e3 * float(errors[d_min > R_MAX].max()),
        "bind_mae_beyond_8_meV": 1e3 * float(errors[d_min > 8.0].mean()),
        "bind_max_beyond_8_meV": 1e3 * float(errors[d_min > 8.0].max()),
        "bind_mae_contact_meV": 1e3 * float(errors[d_min <= R_MAX].mean()),
    }
    for name in sorted({r["pair"] for r in rows}):
        mask = np.array([r["pair"] == name for r in rows]) & (d_min > 8.0)
        result.setdefault("bind_mae_beyond_8_by_pair_meV", {})[name] = 1e3 * float(
            errors[mask].mean()
        )
    energy = [
        abs(p["energy"] - a.info["energy"]) / len(a) for a, p in zip(frames, pred, strict=True)
    ]
    forces = np.concatenate(
        [
            np.abs(p["forces"] - a.arrays["forces"]).ravel()
            for a, p in zip(frames, pred, strict=True)
        ]
    )
    result["energy_mae_meV_per_atom"] = 1e3 * float(np.mean(energy))
    result["forces_mae_meV_A"] = 1e3 * float(forces.mean())
    if "charges" in pred[0]:
        q = np.concatenate([p["charges"] for p in pred])
        ref = np.concatenate([a.arrays["xtb_charges"] for a in frames])
        result["charges_r2"] = float(1 - ((q - ref) ** 2).sum() / ((ref - ref.mean()) ** 2).sum())
        result["charges_pearson_r2"] = float(np.corrcoef(q, ref)[0, 1] ** 2)
        neutral = [
            (a, p)
            for a, p in zip(frames, pred, strict=True)
            if a.info["charge"] == 0 and len(a) > 1
        ]
        dip = [np.linalg.norm(p["dipole"] - a.info["dipole"]) for a, p in neutral]
        result["dipole_mae_eA"] = float(np.mean(dip))
    return result


def plot(out: Path, frames_by_variant: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = ["H2O...H2O", "Cl-...H2O", "NH4+...HCOO-", "NH4+...H2O"]
    fig, axes = plt.subplots(2, len(pairs), figsize=(4 * len(pairs), 7), sharex=True)
    for col, pair in enumerate(pairs):
        for k, (variant, result) in enumerate(frames_by_variant.items()):
            rows = [r for r in result["curves"] if r["pair"] == pair and r["orientation"] == 0]
            d = [r["d"] for r in rows]
            if k == 0:
                axes[0, col].plot(
                    d, [1e3 * r["bind_ref"] for r in rows], "k-", lw=2, label="GFN2-xTB"
                )
            axes[0, col].plot(d, [1e3 * r["bind"] for r in rows], "--", label=variant)
            axes[1, col].semilogy(
                d, [1e3 * abs(r["bind"] - r["bind_ref"]) + 1e-3 for r in rows], label=variant
            )
        axes[0, col].set_title(pair)
        axes[0, col].set_ylabel("binding energy (meV)")
        axes[1, col].set_ylabel("|error| (meV)")
        axes[1, col].set_xlabel("centre-of-mass distance (Å)")
        axes[1, col].axhline(1.0, color="gray", lw=0.8)
        for row in (0, 1):
            axes[row, col].axvline(R_MAX, color="gray", ls=":", lw=0.8)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "binding_curves.png", dpi=110)
    plt.close(fig)


def markdown(results: dict, budget: float) -> str:
    lines = [
        f"Same frames, architecture (r_max {R_MAX:g} Å) and budget ({budget:g} min each); held-out "
        "binding curves and clusters. Binding-curve errors in meV (mean / max) for configurations "
        "whose closest intermolecular atoms are beyond r_max and beyond 8 Å.",
        "",
        "| variant | bind > r_max mean / max | bind > 8 Å mean / max | bind ≤ r_max "
        "| E MAE meV/atom | F MAE meV/Å | q R² vs xTB | dipole MAE e·Å |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        q = f"{r['charges_r2']:.3f}" if "charges_r2" in r else "–"
        mu = f"{r['dipole_mae_eA']:.3f}" if "dipole_mae_eA" in r else "–"
        lines.append(
            f"| {name} | {r['bind_mae_beyond_rmax_meV']:.2f} / {r['bind_max_beyond_rmax_meV']:.1f} "
            f"| {r['bind_mae_beyond_8_meV']:.2f} / {r['bind_max_beyond_8_meV']:.1f} "
            f"| {r['bind_mae_contact_meV']:.1f} | {r['energy_mae_meV_per_atom']:.2f} "
            f"| {r['forces_mae_meV_A']:.1f} | {q} | {mu} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("benchmarks/out/long_range"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/long_range/runs"))
    parser.add_argument("--budget-min", type=float, default=10.0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (one CPU slot: 1)")
    args = parser.parse_args()

    frames = read_labelled(args.data / "curves.xyz")
    results_path = args.data / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for variant in args.variants:
        model = args.out / variant / "best.eqp"
        if not args.evaluate_only:
            model = train_variant(
                variant, args.data, args.out, args.budget_min, args.seed, args.threads
            )
        results[variant] = evaluate(frames, predictions(model, frames, args.threads))
        results_path.write_text(json.dumps(results, indent=1, default=float))
    ordered = {v: results[v] for v in VARIANTS if v in results}
    plot(args.data, ordered)
    table = markdown({k: v for k, v in ordered.items()}, args.budget_min)
    (args.data / "long_range.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
