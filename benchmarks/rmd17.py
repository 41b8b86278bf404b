"""rMD17 benchmark: equipot and MACE side by side on the same split and wall-clock budget.

Protocol: 950 training / 50 validation frames drawn from ``rmd17_<mol>_train_01.npz`` with a
fixed seed, all 1000 frames of ``rmd17_<mol>_test_01.npz`` for the test MAE (meV, meV/Å).
Each code trains for ``--budget-min`` minutes of wall-clock time on ``--threads`` threads
(default 2; equipot: ``torch.set_num_threads``; MACE: ``OMP_NUM_THREADS``), one after the
other; then its best / EMA model is evaluated on the test set. MACE's epoch count fills the
budget (the issue's 30-minute schedule, scaled, at 2 threads; otherwise from a 2-epoch probe
run that is not counted), its SWA stage over the last quarter, and it is stopped at the
budget if it is still going. No MACE figure is ever taken from outside the run.

    python benchmarks/rmd17.py --data ../shared/data/rmd17 --molecule ethanol --budget-min 30

Side by side, one core each (the two halves merge into one result file):

    python benchmarks/rmd17.py --molecule ethanol --threads 1 --cpus 0 --skip-mace &
    python benchmarks/rmd17.py --molecule ethanol --threads 1 --cpus 1 --skip-equipot

Writes ``benchmarks/out/rmd17_<mol>.json``, ``rmd17_<mol>_curves.png`` (validation MAE
against time for both codes), ``rmd17.md`` (table of every molecule run so far) and, with
``--update-results``, the rMD17 section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rmd17_mace import run_mace, write_xyz  # noqa: E402


def run_equipot(
    root: Path,
    train: Path,
    test: Path,
    config: Path,
    budget_s: float,
    seed: int,
    overrides: list[str],
    threads: int,
) -> dict:
    import torch

    from equipot.train import load_config
    from equipot.train import train as train_model
    from equipot.train.history import read_csv

    torch.set_num_threads(threads)
    run_dir = root / "equipot"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cfg = load_config(
        config,
        [
            f"data.train.path={train}",
            f"data.test.path={test}",
            "data.valid_count=50",
            f"data.split_seed={seed}",
            f"seed={seed}",
            f"optim.max_time_min={budget_s / 60}",
            f"output.dir={run_dir}",
            f"num_threads={threads}",
            *overrides,
        ],
    )
    start = time.perf_counter()
    result = train_model(cfg, verbose=True)
    wall = time.perf_counter() - start
    r = result.results
    curve = read_csv(run_dir / "log.csv")
    return {
        "epochs": r["epochs"],
        "steps": r["steps"],
        "train_s": r["elapsed_s"],
        "wall_s": wall,
        "s_per_epoch": r["elapsed_s"] / max(r["epochs"], 1),
        "steps_per_s": r["steps"] / r["elapsed_s"],
        "best_epoch": r["best_epoch"],
        "curve": [
            {k: row[k] for k in ("time_s", "epoch", "valid_energy_mae", "valid_forces_mae")}
            for row in curve
        ],
        "test": r["test"],
        "config": cfg.model_dump(mode="json"),
    }


def time_to_reach(curve: list[dict], key: str, target: float) -> float | None:
    """First time (s) a validation curve is at or below ``target``; None if never."""
    for row in curve:
        if row[key] <= target:
            return row["time_s"]
    return None


def time_to_stay(curve: list[dict], key: str, target: float) -> float | None:
    """Time (s) from which a validation curve stays at or below ``target``; None if never."""
    since = None
    for row in curve:
        if row[key] > target:
            since = None
        elif since is None:
            since = row["time_s"]
    return since


def plot_curves(path: Path, molecule: str, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, style in (("equipot", "-"), ("mace", "--")):
        if name not in results or not results[name]["curve"]:
            continue
        curve = results[name]["curve"]
        t = np.array([row["time_s"] for row in curve]) / 60
        for ax, key, label in (
            (axes[0], "valid_energy_mae", "energy MAE (meV)"),
            (axes[1], "valid_forces_mae", "force MAE (meV/Å)"),
        ):
            ax.plot(t, [1e3 * row[key] for row in curve], style, label=name)
            ax.set_xlabel(f"training wall time (min, {results.get('threads', 2)} threads)")
            ax.set_ylabel(f"validation {label}")
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend()
    subset = f" (subset {results['subset']})" if results.get("subset") else ""
    fig.suptitle(f"rMD17 {molecule}{subset}: validation MAE against training time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(results: dict) -> dict:
    summary = {}
    for name in ("equipot", "mace"):
        if name in results:
            r = results[name]
            summary[name] = {
                "test_energy_mae_meV": 1e3 * r["test"]["energy_mae"],
                "test_forces_mae_meV_A": 1e3 * r["test"]["forces_mae"],
                "epochs": r["epochs"],
                "s_per_epoch": r["s_per_epoch"],
            }
    if "equipot" in results and "mace" in results and results["mace"]["curve"]:
        final = results["mace"]["curve"][-1]
        for key in ("valid_energy_mae", "valid_forces_mae"):
            curve = results["equipot"]["curve"]
            summary["equipot"][f"time_to_mace_final_{key}_s"] = time_to_reach(
                curve, key, final[key]
            )
            summary["equipot"][f"time_below_mace_final_{key}_s"] = time_to_stay(
                curve, key, final[key]
            )
    return summary


def markdown(out: Path, budget_min: float) -> str:
    lines = [
        f"rMD17, 950 train / 50 valid / 1000 test, {budget_min:g} min wall clock each.",
        "Test MAE: energy meV, forces meV/Å; ratios equipot / MACE of the same run. t→MACE: "
        "equipot's wall time until its validation MAE first reaches MACE's final validation "
        "MAE (energy / forces); t≤MACE: from when on it stays there.",
        "",
        "| molecule | threads | code | E MAE | F MAE | E ratio | F ratio | epochs | s/epoch "
        "| t→MACE E / F (min) | t≤MACE E / F (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(out.glob("rmd17_*.json")):
        data = json.loads(path.read_text())
        molecule = data["molecule"] + (f" (subset {data['subset']})" if data.get("subset") else "")
        summary = data["summary"]
        for name, s in summary.items():
            reach = stay = ratio_e = ratio_f = "–"
            if name == "equipot" and "mace" in summary:
                m = summary["mace"]
                ratio_e = f"{s['test_energy_mae_meV'] / m['test_energy_mae_meV']:.2f}"
                ratio_f = f"{s['test_forces_mae_meV_A'] / m['test_forces_mae_meV_A']:.2f}"
            if name == "equipot" and "time_to_mace_final_valid_forces_mae_s" in s:
                reach, stay = (
                    " / ".join(
                        "never" if v is None else f"{v / 60:.1f}"
                        for v in (s.get(f"{kind}_valid_{k}_mae_s") for k in ("energy", "forces"))
                    )
                    for kind in ("time_to_mace_final", "time_below_mace_final")
                )
            lines.append(
                f"| {molecule} | {data.get('threads', 2)} | {name} | "
                f"{s['test_energy_mae_meV']:.2f} | {s['test_forces_mae_meV_A']:.2f} | "
                f"{ratio_e} | {ratio_f} | {s['epochs']} | {s['s_per_epoch']:.1f} | "
                f"{reach} | {stay} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "rmd17")
    p.add_argument("--molecule", action="append", help="repeatable (default: ethanol)")
    p.add_argument("--budget-min", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1, help="split and training seed")
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--config", type=Path, help="equipot config (default examples/rmd17/<mol>.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="equipot config override, e.g. --set model.channels=32",
    )
    p.add_argument("--threads", type=int, default=2, help="threads of each code")
    p.add_argument("--cpus", help="pin this driver and its children to these CPUs, e.g. 0 or 0,1")
    p.add_argument("--skip-mace", action="store_true")
    p.add_argument("--skip-equipot", action="store_true")
    p.add_argument("--mace-epochs", type=int, help="MACE epochs (default: probe s/epoch)")
    p.add_argument("--mace-args", default="", help="extra MACE flags (override the script's)")
    p.add_argument("--update-results", action="store_true", help="rewrite RESULTS.md section")
    p.add_argument(
        "--subset",
        metavar="TRAIN,TEST",
        help="smoke runs only: use the first TRAIN (incl. 50 valid) / TEST frames",
    )
    args = p.parse_args(argv)
    args.out = args.out.resolve()  # MACE runs in its own working directory
    if args.cpus:
        import os

        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    from equipot.data.splits import split_indices

    args.out.mkdir(parents=True, exist_ok=True)
    budget_s = 60 * args.budget_min
    for molecule in args.molecule or ["ethanol"]:
        train = args.data / f"rmd17_{molecule}_train_01.npz"
        test = args.data / f"rmd17_{molecule}_test_01.npz"
        root = args.out / "rmd17" / molecule
        root.mkdir(parents=True, exist_ok=True)
        if args.subset:
            n_train, n_test = (int(x) for x in args.subset.split(","))
            train = _subset_npz(train, n_train, root / "train_subset.npz")
            test = _subset_npz(test, n_test, root / "test_subset.npz")
        results: dict = {
            "molecule": molecule,
            "budget_min": args.budget_min,
            "seed": args.seed,
            "subset": args.subset,
            "threads": args.threads,
        }
        setup = dict(results)
        results.update(_kept_results(args.out / f"rmd17_{molecule}.json", setup))
        if not args.skip_equipot:
            config = args.config or HERE.parent / "examples" / "rmd17" / f"{molecule}.yaml"
            results["equipot"] = run_equipot(
                root, train, test, config, budget_s, args.seed, args.overrides, args.threads
            )
        if not args.skip_mace:
            n = len(np.load(train)["energies"])
            tr, va = split_indices(n, valid_count=50, seed=args.seed)  # equipot's split
            files = {
                "train": write_xyz(train, tr, root / "train.xyz"),
                "valid": write_xyz(train, va, root / "valid.xyz"),
                "test": write_xyz(
                    test, np.arange(len(np.load(test)["energies"])), root / "test.xyz"
                ),
            }
            results["mace"] = run_mace(
                root,
                files,
                budget_s,
                args.seed,
                molecule,
                args.mace_epochs,
                shlex.split(args.mace_args),
                args.threads,
            )
        # a run of the other code that ended meanwhile (side by side on another core) stays
        fresh = {k for k in ("equipot", "mace") if k in results} - {
            k for k, skip in (("equipot", args.skip_equipot), ("mace", args.skip_mace)) if skip
        }
        kept = _kept_results(args.out / f"rmd17_{molecule}.json", setup)
        results.update({k: v for k, v in kept.items() if k not in fresh})
        results["summary"] = summarise(results)
        (args.out / f"rmd17_{molecule}.json").write_text(json.dumps(results, indent=1))
        plot_curves(args.out / f"rmd17_{molecule}_curves.png", molecule, results)
        print(json.dumps(results["summary"], indent=1))
    table = markdown(args.out, args.budget_min)
    (args.out / "rmd17.md").write_text(table + "\n")
    print(table)
    if args.update_results:
        update_results(HERE / "RESULTS.md", table)
    return 0


def _kept_results(path: Path, setup: dict) -> dict:
    """The codes' results stored at ``path`` for the same setup (molecule, budget, seed,
    subset, threads); a run of one code keeps the other code's results."""
    if not path.exists():
        return {}
    kept = json.loads(path.read_text())
    if any(kept.get(k) != v for k, v in setup.items()):
        return {}
    return {k: kept[k] for k in ("equipot", "mace") if k in kept}


def _subset_npz(source: Path, n: int, path: Path) -> Path:
    data = np.load(source)
    arrays = {
        k: data[k][:n] if data[k].ndim and len(data[k]) == len(data["energies"]) else data[k]
        for k in data.files
    }
    np.savez(path, **arrays)
    return path


def update_results(path: Path, table: str) -> None:
    begin, end = "<!-- rmd17:begin -->", "<!-- rmd17:end -->"
    section = (
        f"{begin}\n## rMD17: equipot vs MACE at equal CPU time\n\n{table}\n\n"
        f"Run: `python benchmarks/rmd17.py --molecule <mol> --budget-min 30 "
        f"--update-results`; curves in `benchmarks/out/rmd17_<mol>_curves.png`.\n{end}"
    )
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
