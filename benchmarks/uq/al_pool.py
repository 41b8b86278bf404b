"""Active learning vs random selection from the same MD pool (issue 13), with ``equipot learn``.

    python benchmarks/uq/emt_data.py --frames 400 --out benchmarks/out/uq/emt_al
    python benchmarks/uq/xtb_data.py --frames 500 --out benchmarks/out/uq/xtb_al
    OMP_NUM_THREADS=1 EQUIPOT_THREADS=1 python benchmarks/uq/al_pool.py --system emt
    OMP_NUM_THREADS=1 EQUIPOT_THREADS=1 python benchmarks/uq/al_pool.py --system xtb

Both methods are ``equipot learn`` with ``explore.pool`` (the unlabelled frames of MD runs 0)
and the real reference calculator (EMT / GFN2-xTB) doing the labelling. For each seed they
start from the same random initial frames of the pool, train every round from scratch with
the same config and the same number of optimizer steps (``--min-steps``: a learning curve
measures data, not a step budget that grows with the labels, as a fixed epoch count would), add
labels geometrically (10 → 20 → 40 → … with ``--growth 2``), and differ only in the
selection: ``uncertainty`` (``select.score: auto``, the largest latent distance, then
farthest-point sampling among the 3n most uncertain), ``weighted`` (``select.strategy:
weighted``: each pick the largest latent distance × distance to the labelled and picked
frames, over all candidates) or ``random``. Test errors on frames of independent MD runs
(runs 1), balanced over the conditions.

Target: the force MAE random selection reaches with its full budget, on the curves averaged
over seeds (geometric mean at each label count); reported: the labels each method needs to
reach it (log-log interpolation between rounds), and the same per seed.

Pools: ``emt`` — fcc bulk at 300 / 600 / 900 K (400 frames each), (111) slab at 600 K, bulk
with a vacancy at 600 K and liquid at 2500 K (200 each): bulk dominates, as in MD
exploration; ``xtb`` — ethanol at 300, 600 and 900 K (500 each). The largest label budget
(320) is a fifth of either pool.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from ase.io import read, write

from equipot.learn.config import LearnConfig
from equipot.learn.labelling import LABEL_ID
from equipot.learn.loop import LearnLoop

POOLS = {
    "emt": {
        "pool": {
            "crystal-300": 400,
            "crystal-600": 400,
            "crystal-900": 400,
            "slab-600": 200,
            "vacancy-600": 200,
            "liquid-2500": 200,
        },
        "test": 30,
        "reference": "emt",
        "model": {
            "r_max": 4.5,
            "l_max": 1,
            "channels": 16,
            "radial_hidden": [32, 32],
            "correlation": 2,
        },
    },
    "xtb": {
        "pool": {"ethanol-300": 500, "ethanol-600": 500, "ethanol-900": 500},
        "test": 50,
        "reference": "tblite",
        "model": {
            "r_max": 5.0,
            "l_max": 2,
            "channels": 16,
            "radial_hidden": [32, 32],
            "correlation": 2,
        },
    },
}


METHODS = ("uncertainty", "weighted", "random")  # weighted: select.strategy weighted


def prepare(system: str, data: Path, out: Path, initial: int, seed: int):
    spec = POOLS[system]
    pool, test = [], []
    for name, count in spec["pool"].items():
        pool += read(data / f"{name}-0.extxyz", index=f":{count}")
        test += read(data / f"{name}-1.extxyz", index=f":{spec['test']}")
    rng = np.random.default_rng(seed)
    first = rng.permutation(len(pool))[:initial]
    unlabelled = []
    for atoms in pool:
        bare = atoms.copy()
        bare.calc = None
        unlabelled.append(bare)
    labelled = []
    for k in first:  # the initial frames keep their labels and their pool tag
        atoms = pool[k]
        atoms.info["candidate"] = f"pool-{k}"
        atoms.info[LABEL_ID] = f"init-{k}"
        labelled.append(atoms)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "pool.extxyz", unlabelled)
    write(out / "initial.extxyz", labelled)
    write(out / "test.extxyz", test)
    write(out / "start.extxyz", unlabelled[:1])


def learn_config(system: str, out: Path, method: str, seed: int, args) -> LearnConfig:
    spec = POOLS[system]
    return LearnConfig.model_validate(
        {
            "reference": {"calculator": spec["reference"]},
            "initial": {
                "structures": str(out / "start.extxyz"),
                "labelled": str(out / "initial.extxyz"),
            },
            "train": {
                "model": spec["model"],
                "loss": {"energy_weight": 1.0, "forces_weight": 10.0},
                "optim": {
                    "lr": 0.01,
                    "batch_size": 4,
                    "max_epochs": args.epochs,
                    "scheduler": "cosine",
                    "min_lr": 1e-4,
                },
            },
            "explore": {"pool": str(out / "pool.extxyz")},
            "select": {
                "per_round": args.per_round,
                "growth": args.growth,
                "method": "random" if method == "random" else "uncertainty",
                "strategy": "weighted" if method == "weighted" else "top",
            },
            "stop": {
                "max_rounds": args.rounds,
                "max_labels": 10_000,
                "test": str(out / "test.extxyz"),
            },
            "workers": 2,
            "min_steps": args.min_steps,
            "seed": seed,
            "out": str(out / method),
        }
    )


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """Labels at which a learning curve first reaches ``target`` (a power law between rounds:
    log-log interpolation)."""
    for (n0, e0), (n1, e1) in itertools.pairwise(curve):
        if e0 <= target:
            return float(n0)
        if e1 <= target:
            t = (np.log(e0) - np.log(target)) / (np.log(e0) - np.log(e1))
            return float(np.exp(np.log(n0) + t * (np.log(n1) - np.log(n0))))
    return float(curve[0][0]) if curve and curve[0][1] <= target else None


def run_seed(system: str, data: Path, out: Path, seed: int, args) -> dict:
    """The methods' learning curves for one seed: {method: [(labels, force MAE eV/Å)]}."""
    if not (out / "pool.extxyz").exists():
        prepare(system, data, out, args.initial, seed)
    curves = {}
    for method in args.methods:
        start = time.perf_counter()
        LearnLoop(learn_config(system, out, method, seed, args), progress=False).run()
        rows = (out / method / "learning_curve.csv").read_text().splitlines()[1:]
        curves[method] = [(int(r.split(",")[1]), float(r.split(",")[3])) for r in rows]
        print(f"seed {seed} {method}: {time.perf_counter() - start:.0f} s", flush=True)
    return curves


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Geometric mean over seeds at each label count (the counts agree across seeds)."""
    labels = [n for n, _ in curves[0]]
    assert all([n for n, _ in c] == labels for c in curves), "label counts differ by seed"
    errors = np.exp(np.mean([[np.log(e) for _, e in c] for c in curves], axis=0))
    return list(zip(labels, errors.tolist(), strict=True))


def ratio_to_target(curves: dict) -> tuple[float, dict, dict]:
    """Random's final MAE, the labels each method needs for it, and their ratio to random's."""
    target = curves["random"][-1][1]
    need = {m: labels_to_reach(c, target) for m, c in curves.items()}
    ratio = {m: None if n is None else n / need["random"] for m, n in need.items() if m != "random"}
    return target, need, ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=sorted(POOLS), required=True)
    p.add_argument("--data", type=Path, default=None, help="default benchmarks/out/uq/<system>_al")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--initial", type=int, default=10)
    p.add_argument("--per-round", type=int, default=10)
    p.add_argument("--growth", type=float, default=2.0, help="labels added grow ×this a round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--epochs", type=int, default=1, help="per round, before --min-steps")
    p.add_argument("--min-steps", type=int, default=3000, help="optimizer steps a round, at least")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = p.parse_args()
    data = args.data or Path(f"benchmarks/out/uq/{args.system}_al")
    out = args.out or Path(f"benchmarks/out/uq/al_{args.system}")
    started = time.perf_counter()
    per_seed = {s: run_seed(args.system, data, out / f"seed-{s}", s, args) for s in args.seeds}
    curves = {m: mean_curve([c[m] for c in per_seed.values()]) for m in args.methods}
    if "random" not in curves:  # a partial run (another process runs random): no summary
        print({m: [(n, round(1e3 * e, 1)) for n, e in c] for m, c in curves.items()})
        return
    target, need, ratio = ratio_to_target(curves)
    seeds = {}
    for s, c in per_seed.items():
        t, n, r = ratio_to_target(c)
        seeds[s] = {"curves": c, "target_forces_mae": t, "labels_to_target": n, "label_ratio": r}
    result = {
        "system": args.system,
        "seeds": args.seeds,
        "mean_curves": curves,
        "target_forces_mae": target,
        "labels_to_target": need,
        "label_ratio": ratio,
        "per_seed": seeds,
        "wall_s": time.perf_counter() - started,
    }
    (out / "al.json").write_text(json.dumps(result, indent=1))
    plot(curves, per_seed, target, out / "al_curves.png", args.system)
    print(
        f"{args.system}: target force MAE {1e3 * target:.1f} meV/Å (random at "
        f"{curves['random'][-1][0]} labels, geometric mean of {len(args.seeds)} seeds)"
    )
    for method, curve in curves.items():
        cells = "  ".join(f"{n}:{1e3 * e:.1f}" for n, e in curve)
        print(f"  {method:11s} labels:MAE(meV/Å)  {cells}")
    print(f"  labels to target: {_need(need)} → ratio to random {_ratios(ratio)}")
    for s, row in seeds.items():
        cells = " | ".join(
            f"{m} " + " ".join(f"{1e3 * e:.1f}" for _, e in c) for m, c in row["curves"].items()
        )
        print(
            f"  seed {s}: {cells}"
            f" | labels to its target {_need(row['labels_to_target'])}"
            f" → ratio {_ratios(row['label_ratio'])}"
        )
    sys.stdout.flush()


def _fmt(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.2f}"


def _need(need: dict) -> str:
    return ", ".join(f"{m} {_fmt(n)}" for m, n in need.items())


def _ratios(ratio: dict) -> str:
    return ", ".join(f"{m} {_fmt(r)}" for m, r in ratio.items())


def plot(curves, per_seed, target, png: Path, system: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for colour, (method, curve) in zip(("C0", "C1", "C2"), curves.items(), strict=False):
        n, e = zip(*curve, strict=True)
        ax.plot(n, 1e3 * np.array(e), "o-", color=colour, label=f"{method} (mean)")
        for seed_curves in per_seed.values():
            n, e = zip(*seed_curves[method], strict=True)
            ax.plot(n, 1e3 * np.array(e), "-", color=colour, alpha=0.3, lw=1)
    ax.axhline(1e3 * target, color="grey", ls="--", lw=1, label="target")
    ax.set(
        xlabel="labelled frames",
        ylabel="test force MAE (meV/Å)",
        xscale="log",
        yscale="log",
        title=f"active learning, {system}",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
