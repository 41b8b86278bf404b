"""Transfer on real DFT (rMD17, PBE/def2-SVP): sample efficiency, forgetting, distillation.

    flock /work/coord/cpu.lock python benchmarks/transfer_rmd17.py --steps 600

* **sample efficiency**: test force MAE (all 1000 test frames) against the number of target
  frames n (10, 25, 50, 100, 250, 950 = the whole train file less 50 validation frames),
  from scratch vs fine-tuned from the shipped ``organic-gfn2`` model; the same number of
  optimiser steps per point (``--steps``; or the same minutes with ``--minutes``), the
  rMD17 architecture and recipe of ``examples/rmd17/<molecule>.yaml`` for both.
* **forgetting** (first molecule, n = 100): the shipped model's error on its own validation
  set (GFN2-xTB head) before and after fine-tuning, with replay of its training frames and
  without (replay weight 0: the old head is carried along untrained).
* **distillation** (first molecule): GFN2-xTB labels on the 1000 train geometries
  (distil, ``--steps``) then 50 DFT frames (fine-tune, ``--steps``), against the same 50 DFT
  frames from scratch with twice the steps.

Molecules default to ethanol and malonaldehyde, both absent from the pre-training data
(equipot.pretrained.recipe). Results: benchmarks/out/transfer/results.json and
learning_curves.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import yaml

RMD17 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17"
ROOT = Path(__file__).resolve().parents[1]


def config_for(molecule: str, n: int, out: Path, args, finetune: dict | None = None, train=None):
    raw = yaml.safe_load((ROOT / "examples" / "rmd17" / f"{molecule}.yaml").read_text())
    raw["data"]["train"] = str(train or RMD17 / f"rmd17_{molecule}_train_01.npz")
    raw["data"]["test"] = str(test_file(molecule, args))
    raw["data"]["valid_count"] = 50
    raw["data"]["train_count"] = n
    raw["data"]["cache_dir"] = str(args.out / "cache")
    raw["output"] = {"dir": str(out), "progress": False, "plot": False}
    raw["num_threads"] = args.threads
    raw["uncertainty"] = {"fit": False}  # not part of the comparison; saves time per point
    raw["optim"]["max_time_min"] = args.minutes
    steps_per_epoch = math.ceil(n / raw["optim"]["batch_size"])
    raw["optim"]["max_epochs"] = (
        100000 if args.minutes else max(1, math.ceil(args.steps / steps_per_epoch))
    )
    if finetune is not None:
        raw["finetune"] = {"from": args.base, "head": "pbe", **finetune}
        raw["optim"]["lr"] = args.finetune_lr
    return raw


def test_file(molecule: str, args) -> Path:
    """rMD17's test file, or ``--test-frames`` evenly spaced frames of it (same keys)."""
    import numpy as np

    full = RMD17 / f"rmd17_{molecule}_test_01.npz"
    if args.test_frames is None:
        return full
    out = args.out / f"rmd17_{molecule}_test_01_every{args.test_frames}.npz"
    if not out.is_file():
        data = dict(np.load(full))
        count = len(data["energies"])
        pick = np.linspace(0, count - 1, min(args.test_frames, count)).round().astype(int)
        np.savez(out, **{k: v[pick] if v.shape[:1] == (count,) else v for k, v in data.items()})
    return out


def run(raw: dict, label: str) -> dict:
    from equipot.train import load_config, train

    out = Path(raw["output"]["dir"])
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    start = time.perf_counter()
    result = train(load_config(raw), verbose=False).results
    t = result["test"]
    steps = result["epochs"] * math.ceil(raw["data"]["train_count"] / raw["optim"]["batch_size"])
    result["steps"] = steps
    print(
        f"{label:<40} test E {1e3 * t['energy_mae']:7.2f} meV  F {1e3 * t['forces_mae']:7.2f} "
        f"meV/Å  ({result['epochs']} epochs, {steps} steps, {time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return result


def forgetting(model_path: Path, head: str | None) -> dict:
    from equipot.data.readers import DataSource
    from equipot.model.io import load_model
    from equipot.pretrained import pretrained_path
    from equipot.train.evaluate import evaluate_file

    model = load_model(model_path, head=head)
    metrics, _ = evaluate_file(model, DataSource(path=pretrained_path(None, "valid.xyz")))
    return {k: metrics[k] for k in ("energy_per_atom_mae", "forces_mae")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "malonaldehyde"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 25, 50, 100, 250, 950])
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps per point")
    parser.add_argument("--minutes", type=float, default=None, help="or minutes per point")
    parser.add_argument("--finetune-lr", type=float, default=0.005)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--modes", nargs="+", default=["scratch", "finetune"])
    parser.add_argument(
        "--test-frames", type=int, default=None, help="evenly spaced test frames (default all)"
    )
    parser.add_argument("--base", default="organic-gfn2")
    parser.add_argument("--parts", nargs="+", default=["curves", "forgetting", "distil"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "transfer")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    budget = f"{args.minutes} min" if args.minutes else f"{args.steps} steps"
    results["budget"] = budget
    results["test_frames"] = args.test_frames or "all (1000)"
    results["threads"] = args.threads

    def save():
        results_path.write_text(json.dumps(results, indent=1))

    if "curves" in args.parts:
        curves = results.setdefault("curves", {})
        for molecule in args.molecules:
            for n in args.sizes:
                for mode in args.modes:
                    key = f"{molecule}/{mode}/{n}"
                    out = args.out / budget.replace(" ", "") / molecule / f"{mode}-{n}"
                    ft = {} if mode == "finetune" else None
                    r = run(config_for(molecule, n, out, args, ft), key)
                    curves[key] = r["test"]
                    save()
        plot_curves(args.out / "learning_curves.png", curves, args.molecules, budget)

    molecule = args.molecules[0]
    if "forgetting" in args.parts:
        from equipot.pretrained import resolve_model_path

        table = {"base": forgetting(resolve_model_path(args.base), None)}
        for name, replay in (
            ("replay", {"weight": 1.0}),
            ("no_replay", {"weight": 0.0, "count": 5}),
        ):
            out = args.out / budget.replace(" ", "") / molecule / f"forgetting-{name}"
            r = run(config_for(molecule, 100, out, args, {"replay": replay}), f"forgetting {name}")
            table[name] = forgetting(out / "best.eqp", "gfn2-xtb") | {"test": r["test"]}
        results["forgetting"] = table
        save()
        base_f = table["base"]["forces_mae"]
        for name in ("replay", "no_replay"):
            rise = 100 * (table[name]["forces_mae"] / base_f - 1)
            print(
                f"forgetting ({name}): xTB-validation force MAE {1e3 * base_f:.1f} → "
                f"{1e3 * table[name]['forces_mae']:.1f} meV/Å ({rise:+.1f} %)"
            )

    if "distil" in args.parts:
        xtb = args.out / f"{molecule}_train_gfn2.xyz"
        if not xtb.is_file():
            label_rmd17(RMD17 / f"rmd17_{molecule}_train_01.npz", xtb)
        base_dir = args.out / budget.replace(" ", "") / molecule
        teacher = run(
            config_for(molecule, 950, base_dir / "distil-xtb", args, train=xtb),
            "distil: xTB labels (950 frames)",
        )
        student = run(
            config_for(
                molecule,
                50,
                base_dir / "distil-finetune",
                args,
                {"from": str(base_dir / "distil-xtb" / "best.eqp")} | {},
            ),
            "distil: + 50 DFT frames (fine-tuned)",
        )
        double = argparse.Namespace(**vars(args) | {"steps": 2 * args.steps})
        if args.minutes:
            double.minutes = 2 * args.minutes
        alone = run(
            config_for(molecule, 50, base_dir / "distil-scratch50", double),
            "distil: 50 DFT frames alone (2x budget)",
        )
        results["distillation"] = {
            "xtb_teacher_test": teacher["test"],
            "distilled_plus_50": student["test"],
            "scratch_50": alone["test"],
        }
        save()
        ratio = alone["test"]["forces_mae"] / student["test"]["forces_mae"]
        print(f"distillation: 50 DFT alone / distilled + 50 DFT force MAE = {ratio:.2f}x")
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)


def label_rmd17(npz: Path, out: Path) -> None:
    import numpy as np
    from ase import Atoms
    from ase.io import write

    from equipot.transfer.teachers import label

    data = np.load(npz)
    frames = [Atoms(numbers=data["nuclear_charges"], positions=p) for p in data["coords"]]
    write(out, label(frames, "gfn2-xtb", config_type="gfn2-xtb"), format="extxyz")


def plot_curves(path: Path, curves: dict, molecules: list[str], budget: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(molecules), figsize=(5 * len(molecules), 4), squeeze=False)
    for ax, molecule in zip(axes[0], molecules, strict=True):
        for mode, style in (("scratch", "o-"), ("finetune", "s-")):
            pts = sorted(
                (int(k.split("/")[2]), 1e3 * v["forces_mae"])
                for k, v in curves.items()
                if k.startswith(f"{molecule}/{mode}/")
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=mode)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("target frames")
        ax.set_ylabel("test force MAE (meV/Å)")
        ax.set_title(f"{molecule} ({budget} per point)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
