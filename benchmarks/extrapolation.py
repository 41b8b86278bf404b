"""Extrapolation benchmark (issue 10): equipot and MACE trained on the same in-distribution
frames for the same wall-clock time, tested far outside them.

    python benchmarks/extrapolation.py --budget-min 8            # every system
    python benchmarks/extrapolation.py --systems methyl_acetate --budget-min 4
    python benchmarks/extrapolation.py --systems methyl_acetate --models equipot \
        --equipot-set model.saturation=2 --equipot-set optim.max_time_min=null \
        --equipot-set optim.max_epochs=115     # equipot only, a fixed epoch budget

``--models equipot`` skips MACE (probe, training, evaluation); ``--equipot-set KEY=VALUE``
changes equipot's recipe (dotted key, YAML value) — with ``optim.max_time_min=null`` the
budget is ``optim.max_epochs`` instead of wall-clock time (for comparisons on a machine whose
load one does not control).

Data: ``extrapolation_data.py`` (GFN2-xTB for three flexible molecules — train on 300 K MD,
test on 300 / 600 / 1200 K MD, a relaxed 360° torsion scan, bond stretching to dissociation,
compression — and EMT copper: train on the crystal at ≤ 600 K, test on the liquid, surfaces
and a vacancy). Both codes get the isolated-atom energies of the reference method as E0.

Fairness: per system the two codes train *at the same time*, each with one thread and pinned
to its own core (``taskset``; ``--no-pin`` leaves placement to the OS, e.g. when
``--launcher`` hands out cores; ``--serial`` runs them one after the other on one core), for
``--budget-min`` minutes of training (start-up and preprocessing excluded for both).
``--launcher CMD`` prefixes every heavy child process
(probe, both trainings, both evaluations), e.g. a CPU-slot wrapper on a shared machine.
MACE (its own venv) runs the rMD17 recipe of ``peers/mace_rmd17.sh`` with the given E0s; its
epoch count comes from a probe (2 epochs on a fifth of the training set) with a 5 % margin, so
its SWA stage covers the last quarter; a run still going at the budget is stopped and evaluated
from its latest checkpoint. equipot runs ``examples/rmd17/ethanol.yaml``'s recipe (molecules)
or ``examples/cu_emt_properties.yaml``'s (copper) with a cosine schedule over the budget and
its stage two in the last quarter. Both models are evaluated in float64 by the same code
(``extrapolation_eval.py``), including each model's own relaxed torsion scan.

Writes ``benchmarks/out/extrapolation/results.json``, ``table.md`` and ``<system>_scans.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from ase.io import read

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from extrapolation_data import MOLECULES, generate  # noqa: E402
from extrapolation_eval import test_files  # noqa: E402
from extrapolation_shape import compare  # noqa: E402
from rmd17_mace import MACE_BIN, _supervise, parse_log  # noqa: E402

MACE_SCRIPT = HERE / "peers" / "mace_rmd17.sh"
MACE_EVAL = HERE / "peers" / "mace_extrapolation.py"


def equipot_config(system: str, folder: Path, run: Path, budget_min: float, e0: dict) -> dict:
    data = {
        "train": {
            "path": str(folder / "train.xyz"),
            "energy_key": "REF_energy",
            "forces_key": "REF_forces",
        },
        "valid": {
            "path": str(folder / "valid.xyz"),
            "energy_key": "REF_energy",
            "forces_key": "REF_forces",
        },
    }
    if system == "copper":
        recipe = yaml.safe_load((ROOT / "examples" / "cu_emt_properties.yaml").read_text())
        recipe["model"]["r_max"] = 5.0
        recipe["loss"]["stress_weight"] = recipe["optim"]["stage_two"]["stress_weight"] = 0.0
    else:
        recipe = yaml.safe_load((ROOT / "examples" / "rmd17" / "ethanol.yaml").read_text())
    recipe["data"] = data
    recipe["model"]["e0"] = e0
    recipe["num_threads"] = 1
    recipe["optim"]["max_time_min"] = budget_min
    recipe["optim"]["max_epochs"] = 100000
    recipe["output"] = {"dir": str(run), "progress": False, "plot": False}
    # energies and forces only: the uncertainty fit after training (issue 13) is not measured
    recipe["uncertainty"] = {"fit": False}
    for key, value in OVERRIDES:
        override(recipe, key, value)
    return recipe


def mace_args(
    folder: Path, e0: dict, epochs: int, swa: int, work: Path, train: Path | None = None
) -> tuple[list, dict]:
    from ase.data import atomic_numbers

    train = train or folder / "train.xyz"
    env = dict(
        os.environ,
        WORKDIR=str(work),
        TRAIN=str(train),
        VALID=str(folder / "valid.xyz"),
        TEST=str(folder / "valid.xyz"),
        EPOCHS=str(epochs),
        START_SWA=str(swa),
        SEED="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    e0s = "{" + ", ".join(f"{atomic_numbers[s]}: {v}" for s, v in e0.items()) + "}"
    return ["--E0s", e0s], env


# set once by main() from the command line
LAUNCH: dict = {"prefix": [], "pin": True, "serial": False, "models": ("equipot", "mace")}
# ``--equipot-set model.repulsion.outer=1.0`` ...: (dotted key, YAML value) into equipot's recipe
OVERRIDES: list[tuple[str, object]] = []


def override(recipe: dict, key: str, value) -> None:
    """Set ``recipe[a][b]... = value`` for the dotted key ``a.b...`` (missing levels created;
    a ``null`` level, e.g. ``model.repulsion``, becomes a mapping)."""
    *path, last = key.split(".")
    node = recipe
    for part in path:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def launched(cmd: list, core: int) -> list:
    """``cmd`` behind the launcher prefix, pinned to ``core`` unless pinning is off."""
    pin = ["taskset", "-c", str(core)] if LAUNCH["pin"] else []
    return [*LAUNCH["prefix"], *pin, *cmd]


def start_mace(folder, e0, epochs, swa, work: Path, core: int, log: Path, train=None):
    work.mkdir(parents=True, exist_ok=True)
    extra, env = mace_args(folder, e0, epochs, swa, work, train)
    cmd = launched(["bash", str(MACE_SCRIPT), *extra], core)
    out = open(log, "a")
    return subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def mace_seconds_per_epoch(folder, e0, root: Path, core: int) -> float:
    """MACE's time per epoch on the full training set, from 2 epochs on a fifth of it (not
    counted in the budget; validation on the full validation set each epoch)."""
    from ase.io import write

    work = root / "mace_probe"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    frames = read(folder / "train.xyz", ":")
    subset = root / "probe_train.xyz"
    write(subset, frames[: len(frames) // 5])
    proc = start_mace(folder, e0, 2, 1, work, core, root / "mace_probe.out", train=subset)
    if proc.wait():
        raise RuntimeError(f"MACE probe failed; see {root / 'mace_probe.out'}")
    rows = parse_log(work, 1)
    return 5.0 * rows[-1]["time_s"] / rows[-1]["epoch"]


def mace_model(work: Path) -> Path:
    models = sorted(work.glob("*_stagetwo.model")) or sorted(work.glob("MACE.model"))
    if models:
        return models[0]
    raise RuntimeError(f"no MACE model in {work}")


def finish_stopped_mace(folder, e0, work, core, log, done: int, swa: int) -> None:
    """A run stopped at the budget: MACE loads its latest checkpoint and writes the model."""
    proc = start_mace(folder, e0, max(done, 1), max(1, min(swa, done - 1)), work, core, log)
    proc.wait()


def train_both(system: str, folder: Path, root: Path, budget_min: float) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    e0 = meta["e0"]
    root.mkdir(parents=True, exist_ok=True)
    mace_too = "mace" in LAUNCH["models"]
    spe = mace_seconds_per_epoch(folder, e0, root, core=1) if mace_too else float("nan")
    # 5 % margin: MACE's schedule (SWA included) should end inside the budget even if the run
    # beside it slows it a little; a run still going at the budget is cut and evaluated as is
    epochs = max(2, int(0.95 * budget_min * 60 / spe)) if mace_too else 0
    swa = max(1, round(0.75 * epochs))
    config = equipot_config(system, folder, root / "equipot", budget_min, e0)
    config_path = root / "equipot.yaml"
    config_path.write_text(yaml.safe_dump(config))
    work = root / "mace"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    if (root / "equipot").exists():
        import shutil

        shutil.rmtree(root / "equipot")
    eq_log = open(root / "equipot.out", "w")
    eq = subprocess.Popen(
        launched([sys.executable, "-m", "equipot.cli.main", "train", str(config_path)], 0),
        stdout=eq_log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    if LAUNCH["serial"]:  # one core: equipot's run first, then MACE's, on the same core
        eq.wait()
    finished, rows = False, []
    if mace_too:
        mace_log = root / "mace.out"
        mace = start_mace(folder, e0, epochs, swa, work, 1, mace_log)
        finished = _supervise(mace, work / "logs" / "MACE_run-1.log", 0, budget_min * 60, mace_log)
        rows = parse_log(work, 1)
        if not finished:
            done = rows[-1]["epoch"] if rows else 1
            finish_stopped_mace(folder, e0, work, 1, mace_log, done, swa)
    eq.wait()
    if eq.returncode:
        raise RuntimeError(f"equipot training failed; see {root / 'equipot.out'}")
    return {
        "models": list(LAUNCH["models"]),
        "equipot_overrides": {k: v for k, v in OVERRIDES},
        "mace_seconds_per_epoch_probe": spe,
        "mace_epochs_planned": epochs,
        "mace_swa_start": swa,
        "mace_epochs_done": rows[-1]["epoch"] if rows else 0,
        "mace_finished": finished,
        "equipot_results": json.loads((root / "equipot" / "results.json").read_text()),
    }


def evaluate_both(folder: Path, root: Path) -> dict:
    """Both models on every test, side by side (one thread and one core each)."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
    )
    outputs = {"equipot": root / "equipot_eval.json", "mace": root / "mace_eval.json"}
    if "mace" not in LAUNCH["models"]:
        outputs.pop("mace")
    commands = {
        "equipot": [
            sys.executable,
            str(HERE / "extrapolation_eval.py"),
            str(root / "equipot" / "best.eqp"),
            str(folder),
            str(outputs["equipot"]),
        ],
        "mace": [
            str(MACE_BIN / "python"),
            str(MACE_EVAL),
            str(mace_model(root / "mace")) if "mace" in outputs else "",
            str(folder),
            str(outputs.get("mace", "")),
        ],
    }
    commands = {code: cmd for code, cmd in commands.items() if code in outputs}
    procs = {}
    for core, (code, cmd) in enumerate(commands.items()):
        procs[code] = subprocess.Popen(launched(cmd, 0 if LAUNCH["serial"] else core), env=env)
        if LAUNCH["serial"]:
            procs[code].wait()
    for code, proc in procs.items():
        if proc.wait():
            raise RuntimeError(f"{code} evaluation failed (exit {proc.returncode})")
    return {code: json.loads(path.read_text()) for code, path in outputs.items()}


def errors(folder: Path, predictions: dict) -> dict:
    """MAE per test: energy (meV per structure; per atom for copper) and forces (meV/Å)."""
    table = {}
    per_atom = not (folder / "torsion.xyz").exists()
    for name, paths in test_files(folder).items():
        frames = [f for p in paths for f in read(p, ":")]
        ref_e = np.array([f.info["REF_energy"] for f in frames])
        n = np.array([len(f) for f in frames])
        ref_f = np.concatenate([f.arrays["REF_forces"].ravel() for f in frames])
        row = {}
        for code, pred in predictions.items():
            e = np.array(pred[name]["energy"])
            f = np.concatenate([np.asarray(x).ravel() for x in pred[name]["forces"]])
            de = (e - ref_e) / (n if per_atom else 1)
            row[code] = {
                "energy_mae_meV": 1e3 * float(np.abs(de).mean()),
                "forces_mae_meV_A": 1e3 * float(np.abs(f - ref_f).mean()),
            }
        table[name] = row
    if not per_atom:
        table.update(scan_shapes(folder, predictions))
    return table


def scan_shapes(folder: Path, predictions: dict) -> dict:
    """Spurious-minimum depth and shape per scan (``extrapolation_shape.compare``): the
    model's own relaxed torsion scan, and the model on the reference's rigid stretches and
    compressions."""
    reference = {"torsion": read(folder / "torsion.xyz", ":")}
    for path in sorted(folder.glob("stretch_*.xyz")):
        reference[path.stem] = read(path, ":")
    reference["compression"] = read(folder / "compression.xyz", ":")
    table = {}
    for scan, frames in reference.items():
        ref = np.array([f.info["REF_energy"] for f in frames])
        row = {}
        for code, pred in predictions.items():
            if scan == "torsion":
                energy = np.array(pred["torsion_scan"]["energy"])
            else:
                key = "stretch" if scan.startswith("stretch") else scan
                offset = stretch_offset(folder, scan) if key == "stretch" else 0
                energy = np.array(pred[key]["energy"][offset : offset + len(frames)])
            row[code] = compare(ref, energy, periodic=scan == "torsion")
            if scan == "torsion":
                row[code]["flags"] = pred["torsion_scan"]["check"]["messages"]
        table[f"{scan} scan" + (" (model-relaxed)" if scan == "torsion" else "")] = row
    return table


def stretch_offset(folder: Path, stem: str) -> int:
    """Where ``stem``'s frames start in the concatenated "stretch" predictions."""
    offset = 0
    for path in sorted(folder.glob("stretch_*.xyz")):
        if path.stem == stem:
            return offset
        offset += len(read(path, ":"))
    raise KeyError(stem)


def plot_system(path: Path, system: str, folder: Path, predictions: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not (folder / "torsion.xyz").exists():
        return
    panels = ["torsion", *[p.stem for p in sorted(folder.glob("stretch_*.xyz"))], "compression"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    colours = {"xTB": "k", "equipot": "C0", "mace": "C3", "plain": "C2"}
    offset = 0
    for ax, panel in zip(axes, panels, strict=True):
        frames = read(folder / f"{panel}.xyz", ":")
        x = np.array([f.info["value"] for f in frames])
        ref = np.array([f.info["REF_energy"] for f in frames])
        zero = ref[0]
        ax.plot(x, ref - zero, "-", color=colours["xTB"], label="GFN2-xTB")
        for code, pred in predictions.items():
            if panel == "torsion":
                scan = pred["torsion_scan"]
                e = np.array(scan["energy"]) - scan["energy"][0]
                ax.plot(
                    scan["values"],
                    e,
                    "o-",
                    ms=3,
                    color=colours[code],
                    label=f"{code} (own relaxed scan)",
                )
            else:
                key = "stretch" if panel.startswith("stretch") else panel
                n = len(frames)
                start = offset if key == "stretch" else 0
                e = np.array(pred[key]["energy"][start : start + n])
                ax.plot(x, e - zero, "o--", ms=3, color=colours[code], label=code)
        if panel.startswith("stretch"):
            offset += len(frames)
        ax.set_title(f"{system}: {panel}", fontsize=9)
        ax.set_xlabel(
            {"torsion": "dihedral (deg)", "compression": "scale factor"}.get(
                panel, "bond length (Å)"
            )
        )
        ax.set_ylabel("E − E(first) (eV)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


NAMES = {"equipot": "equipot", "mace": "MACE"}


def markdown(results: dict) -> str:
    """Both tables for the codes that were run (equipot and/or MACE)."""
    codes = [
        c for c in NAMES if any(c in r for res in results.values() for r in res["errors"].values())
    ]
    names = [NAMES[c] for c in codes]
    lines = [
        "| system | test | "
        + " | ".join(f"{n} E MAE" for n in names)
        + " | "
        + " | ".join(f"{n} F MAE" for n in names)
        + " |",
        "|---|---|" + "---:|" * (2 * len(codes)),
    ]
    for system, res in results.items():
        unit = "meV/atom" if system == "copper" else "meV"
        for test, row in res["errors"].items():
            if "relative_mae_meV" in row.get("equipot", {}):
                continue  # scans: second table
            e = " | ".join(f"{row[c]['energy_mae_meV']:.1f} {unit}" for c in codes)
            f = " | ".join(f"{row[c]['forces_mae_meV_A']:.1f}" for c in codes)
            lines.append(f"| {system} | {test} | {e} | {f} |")
    lines += [
        "",
        "| system | scan | "
        + " | ".join(f"{n} rel. E MAE (meV)" for n in names)
        + " | "
        + " | ".join(f"{n} spurious min. (eV)" for n in names)
        + f" | barrier/top xTB; {'; '.join(names)} (eV) | shape right: {' / '.join(names)} |",
        "|---|---|" + "---:|" * (2 * len(codes)) + "---|---|",
    ]
    for system, res in results.items():
        for test, row in res["errors"].items():
            if "relative_mae_meV" not in row.get("equipot", {}):
                continue
            rel = " | ".join(f"{row[c]['relative_mae_meV']:.0f}" for c in codes)
            hole = " | ".join(f"{row[c]['spurious_minimum_eV']:.3f}" for c in codes)
            tops = "; ".join(
                [f"{row[codes[0]]['reference_max_eV']:.3f}"]
                + [f"{row[c]['model_max_eV']:.3f}" for c in codes]
            )
            shape = " / ".join("yes" if row[c]["shape_right"] else "NO" for c in codes)
            lines.append(f"| {system} | {test} | {rel} | {hole} | {tops} | {shape} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", default=[*MOLECULES, "copper"])
    p.add_argument("--budget-min", type=float, default=8.0)
    p.add_argument("--out", type=Path, default=HERE / "out" / "extrapolation")
    p.add_argument("--skip-training", action="store_true", help="evaluate existing runs")
    p.add_argument(
        "--launcher",
        default="",
        help="command prefixed to every heavy child process (e.g. a CPU-slot wrapper)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin the children to cores")
    p.add_argument(
        "--serial",
        action="store_true",
        help="one core: each code trains (and is evaluated) after the other, same budget",
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=["equipot", "mace"],
        default=["equipot", "mace"],
        help="codes to train and evaluate (default both; MACE needs its own venv)",
    )
    p.add_argument(
        "--equipot-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override equipot's recipe, e.g. model.repulsion.outer=1.0 (value read as YAML)",
    )
    args = p.parse_args(argv)
    LAUNCH.update(
        prefix=shlex.split(args.launcher),
        pin=not args.no_pin,
        serial=args.serial,
        models=tuple(args.models),
    )
    for item in args.equipot_set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--equipot-set wants KEY=VALUE, got {item!r}")
        OVERRIDES.append((key, yaml.safe_load(value)))
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for system in args.systems:
        folder = generate(args.out / "data", [system])[system]
        root = args.out / "runs" / system
        uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
        t0 = time.time()
        if args.skip_training:  # keep what the training run recorded
            training = results.get(system, {}).get("training", {})
        else:
            training = train_both(system, folder, root, args.budget_min)
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        predictions = evaluate_both(folder, root)
        (root / "predictions.json").write_text(json.dumps(predictions))
        budget = results.get(system, {}).get("budget_min") if args.skip_training else None
        results[system] = {
            "budget_min": budget or args.budget_min,
            "training": training,
            "errors": errors(folder, predictions),
            "uptime": uptime,
            "wall_s": time.time() - t0,
        }
        plot_system(args.out / f"{system}_scans.png", system, folder, predictions)
        results_path.write_text(json.dumps(results, indent=1))
        (args.out / "table.md").write_text(markdown(results) + "\n")
        print(markdown({system: results[system]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
