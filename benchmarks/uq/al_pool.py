"""Active learning vs random selection from the same MD pool (issue 13), with ``equipot learn``.

    flock /work/coord/cpu.lock python benchmarks/uq/al_pool.py --system emt
    flock /work/coord/cpu.lock python benchmarks/uq/al_pool.py --system xtb

Both runs are ``equipot learn`` with ``explore.pool`` (the unlabelled frames of MD runs 0)
and the real reference calculator (EMT / GFN2-xTB) doing the labelling; they start from the
same random initial frames of the pool, train every round from scratch with the same config
and epochs, and differ only in ``select.method``: ``uncertainty`` (the model's score — force
radius where calibrated, else latent distance — then farthest-point sampling among the 3n
most uncertain) or ``random``. Test errors on frames of independent MD runs (runs 1),
balanced over the conditions. Target: the force MAE random selection reaches with its full
budget; reported: the labels each method needs to reach it.

Pools: ``emt`` — fcc bulk at 300 / 600 / 900 K (200 frames each), (111) slab at 600 K,
bulk with a vacancy at 600 K and liquid at 2500 K (100 each): bulk dominates, as in MD
exploration; ``xtb`` — ethanol at 300, 600 and 900 K (150 each).
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
            "crystal-300": 200,
            "crystal-600": 200,
            "crystal-900": 200,
            "slab-600": 100,
            "vacancy-600": 100,
            "liquid-2500": 100,
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
        "pool": {"ethanol-300": 150, "ethanol-600": 150, "ethanol-900": 150},
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


def learn_config(system: str, out: Path, method: str, args) -> LearnConfig:
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
            "select": {"per_round": args.per_round, "method": method},
            "stop": {
                "max_rounds": args.rounds,
                "max_labels": 10_000,
                "test": str(out / "test.extxyz"),
            },
            "workers": 2,
            "seed": args.seed,
            "out": str(out / method),
        }
    )


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """Labels at which a learning curve first reaches ``target`` (log-linear between rounds)."""
    for (n0, e0), (n1, e1) in itertools.pairwise(curve):
        if e0 <= target:
            return float(n0)
        if e1 <= target:
            t = (np.log(e0) - np.log(target)) / (np.log(e0) - np.log(e1))
            return float(n0 + t * (n1 - n0))
    return float(curve[0][0]) if curve and curve[0][1] <= target else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=sorted(POOLS), required=True)
    p.add_argument("--data", type=Path, default=None, help="default benchmarks/out/uq/<system>")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--initial", type=int, default=10)
    p.add_argument("--per-round", type=int, default=10)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = args.data or Path(f"benchmarks/out/uq/{args.system}")
    out = args.out or Path(f"benchmarks/out/uq/al_{args.system}")
    if not (out / "pool.extxyz").exists():
        prepare(args.system, data, out, args.initial, args.seed)
    curves, timing = {}, {}
    for method in ("uncertainty", "random"):
        start = time.perf_counter()
        LearnLoop(learn_config(args.system, out, method, args), progress=False).run()
        timing[method] = time.perf_counter() - start
        rows = (out / method / "learning_curve.csv").read_text().splitlines()[1:]
        curves[method] = [(int(r.split(",")[1]), float(r.split(",")[3])) for r in rows]
    target = curves["random"][-1][1]
    need = {m: labels_to_reach(c, target) for m, c in curves.items()}
    ratio = None if need["uncertainty"] is None else need["uncertainty"] / need["random"]
    result = {
        "system": args.system,
        "curves": curves,
        "target_forces_mae": target,
        "labels_to_target": need,
        "label_ratio": ratio,
        "wall_s": timing,
    }
    (out / "al.json").write_text(json.dumps(result, indent=1))
    plot(curves, target, out / "al_curves.png", args.system)
    print(
        f"{args.system}: target force MAE {1e3 * target:.1f} meV/Å (random at "
        f"{curves['random'][-1][0]} labels)"
    )
    for method, curve in curves.items():
        cells = "  ".join(f"{n}:{1e3 * e:.1f}" for n, e in curve)
        print(f"  {method:11s} labels:MAE(meV/Å)  {cells}")
    print(
        f"  labels to target: uncertainty {need['uncertainty']}, random {need['random']}"
        f" → ratio {ratio}"
    )
    sys.stdout.flush()


def plot(curves, target, png: Path, system: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, curve in curves.items():
        n, e = zip(*curve, strict=True)
        ax.plot(n, 1e3 * np.array(e), "o-", label=method)
    ax.axhline(1e3 * target, color="grey", ls="--", lw=1, label="target")
    ax.set(
        xlabel="labelled frames",
        ylabel="test force MAE (meV/Å)",
        yscale="log",
        title=f"active learning, {system}",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
