"""MACE side of the rMD17 benchmark: data conversion, a budgeted run, log parsing, test errors.

MACE has no wall-clock budget option. The issue's baseline fixes the epochs for 30 minutes
(ethanol 25 with SWA from 19, aspirin 12 / 9; malonaldehyde has ethanol's size); other budgets
scale them, other molecules use ``--mace-epochs`` or a 2-epoch probe run (not counted). The
run is stopped at the budget if it is still going. A stopped run
is finished by MACE itself: ``--restart_latest`` with ``max_num_epochs`` = epochs done loads
the latest (best, EMA) checkpoint, skips training and evaluates/saves the model. Test errors
come from ``mace_eval_configs`` predictions on the test file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

KCAL = 0.0433641
SCRIPT = Path(__file__).parent / "peers" / "mace_rmd17.sh"
MACE_BIN = Path(os.environ.get("MACE_BIN", "/work/peers/mace/bin"))
_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: Epoch (\d+):.*?loss=\s*([\d.eE+-]+).*?"
    r"MAE_E=\s*([\d.eE+-]+) meV, MAE_F=\s*([\d.eE+-]+) meV"
)


def write_xyz(npz: Path, indices: np.ndarray, path: Path) -> Path:
    """rMD17 frames → extxyz in eV, eV/Å (keys REF_energy / REF_forces)."""
    data = np.load(npz)
    frames = []
    for k in indices:
        atoms = Atoms(numbers=data["nuclear_charges"], positions=data["coords"][k])
        atoms.info["REF_energy"] = float(data["energies"][k]) * KCAL
        atoms.arrays["REF_forces"] = data["forces"][k] * KCAL
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return path


def _env(work: Path, files: dict, epochs: int, start_swa: int, seed: int, threads: int) -> dict:
    env = dict(os.environ)
    env.update(
        WORKDIR=str(work),
        TRAIN=str(files["train"]),
        VALID=str(files["valid"]),
        TEST=str(files["test"]),
        EPOCHS=str(epochs),
        START_SWA=str(start_swa),
        SEED=str(seed),
        OMP_NUM_THREADS=str(threads),
    )
    return env


def run_script(
    work, files, epochs, start_swa, seed, extra, budget_s=None, log=None, threads=2
) -> bool:
    """Run the MACE command; True if it finished, False if stopped at the budget.

    The budget counts from MACE's "Started training" line (its start-up and preprocessing,
    like equipot's, are not part of the training budget).
    """
    work.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(SCRIPT), *extra]
    log_file = work / "logs" / f"MACE_run-{seed}.log"
    starts_before = _count_starts(log_file)
    with open(log or os.devnull, "a") as out:
        env = _env(work, files, epochs, start_swa, seed, threads)
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return _supervise(proc, log_file, starts_before, budget_s, log)
        finally:
            if proc.poll() is None:  # the driver itself was interrupted
                os.killpg(proc.pid, signal.SIGTERM)


def _supervise(proc, log_file: Path, starts_before: int, budget_s, log) -> bool:
    started = None
    while proc.poll() is None:
        time.sleep(2.0)
        if started is None and _count_starts(log_file) > starts_before:
            started = time.perf_counter()
        if budget_s is not None and started and time.perf_counter() - started > budget_s:
            os.killpg(proc.pid, signal.SIGTERM)  # the process group this call started
            proc.wait(timeout=60)
            return False
    if proc.returncode:
        raise RuntimeError(f"MACE failed (exit {proc.returncode}); see {log}")
    return True


def _count_starts(log_file: Path) -> int:
    if not log_file.is_file():
        return 0
    return log_file.read_text(errors="replace").count("Started training")


def parse_log(work: Path, seed: int) -> list[dict]:
    """Validation rows (time since training started, epoch, loss, MAE E / F in eV) of a run."""
    path = work / "logs" / f"MACE_run-{seed}.log"
    rows, start = [], None
    for line in path.read_text().splitlines():
        stamp = line[:23]
        if "Started training" in line:
            start = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
        m = _LINE.match(line)
        if m and start is not None:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
            rows.append(
                {
                    "time_s": (t - start).total_seconds(),
                    "epoch": int(m.group(2)) + 1,
                    "valid_loss": float(m.group(3)),
                    "valid_energy_mae": float(m.group(4)) * 1e-3,
                    "valid_forces_mae": float(m.group(5)) * 1e-3,
                }
            )
    return rows


def seconds_per_epoch(rows: list[dict]) -> float:
    return rows[-1]["time_s"] / rows[-1]["epoch"]


def probe(root: Path, files: dict, seed: int, extra: list[str], threads: int = 2) -> float:
    """Seconds per epoch of MACE from a 2-epoch run (not part of the budget)."""
    work = root / "mace_probe"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    run_script(work, files, 2, 1, seed, extra, log=root / "mace_probe.out", threads=threads)
    return seconds_per_epoch(parse_log(work, seed))


def test_errors(work: Path, test: Path) -> dict:
    """MAE of MACE's final model (Stage Two if it started) on the test file."""
    models = sorted(work.glob("*_stagetwo.model")) or sorted(work.glob("MACE.model"))
    if not models:
        raise RuntimeError(f"no MACE model file in {work}")
    out = work / "test_predictions.xyz"
    env = dict(os.environ, OMP_NUM_THREADS="2", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    subprocess.run(
        [
            str(MACE_BIN / "mace_eval_configs"),
            "--configs",
            str(test),
            "--model",
            str(models[0]),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--default_dtype",
            "float64",
            "--batch_size",
            "50",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    ref, pred = read(test, ":"), read(out, ":")
    e = np.array(
        [p.info["MACE_energy"] - r.info["REF_energy"] for r, p in zip(ref, pred, strict=True)]
    )
    f = np.concatenate(
        [
            (p.arrays["MACE_forces"] - r.arrays["REF_forces"]).ravel()
            for r, p in zip(ref, pred, strict=True)
        ]
    )
    return {
        "energy_mae": float(np.abs(e).mean()),
        "forces_mae": float(np.abs(f).mean()),
        "model": models[0].name,
        "num_frames": len(ref),
    }


# (epochs, SWA start) of the 30-minute baseline runs on 2 cores
BASELINE_30_MIN = {"ethanol": (25, 19), "malonaldehyde": (25, 19), "aspirin": (12, 9)}


def schedule(molecule: str, budget_s: float) -> tuple[int, int] | None:
    """MACE epochs and SWA start for this budget (the baseline's, scaled); None if unknown."""
    if molecule not in BASELINE_30_MIN:
        return None
    epochs, swa = BASELINE_30_MIN[molecule]
    scaled = max(2, round(epochs * budget_s / 1800))
    return scaled, max(1, min(scaled - 1, round(scaled * swa / epochs)))


def run_mace(
    root: Path,
    files: dict,
    budget_s: float,
    seed: int,
    molecule: str,
    epochs: int | None,
    extra: list[str],
    threads: int = 2,
) -> dict:
    """A budgeted MACE run; returns curves, epochs, timing and test errors."""
    import shutil

    s_epoch_probe = None
    plan = schedule(molecule, budget_s) if threads == 2 else None  # the baseline's 2 threads
    if epochs is None and plan is None:
        s_epoch_probe = probe(root, files, seed, extra, threads)
        epochs = max(2, int(budget_s / s_epoch_probe))
    if epochs is None:
        epochs, start_swa = plan
    else:
        start_swa = max(1, min(epochs - 1, round(0.76 * epochs)))
    work = root / "mace"
    if work.exists():
        shutil.rmtree(work)  # --restart_latest must not pick up an older run
    started = time.perf_counter()
    finished = run_script(
        work,
        files,
        epochs,
        start_swa,
        seed,
        extra,
        budget_s,
        log=root / "mace.out",
        threads=threads,
    )
    wall = time.perf_counter() - started
    rows = parse_log(work, seed)
    if not finished:  # let MACE evaluate and save its latest checkpoint
        done = rows[-1]["epoch"] if rows else 1
        run_script(
            work,
            files,
            done,
            max(1, min(start_swa, done - 1)),
            seed,
            extra,
            log=root / "mace_finish.out",
            threads=threads,
        )
    return {
        "epochs_planned": epochs,
        "start_stage_two": start_swa,
        "stopped_at_budget": not finished,
        "epochs": rows[-1]["epoch"] if rows else 0,
        "train_wall_s": wall,
        "s_per_epoch": seconds_per_epoch(rows) if rows else float("nan"),
        "s_per_epoch_probe": s_epoch_probe,
        "curve": rows,
        "test": test_errors(work, files["test"]),
    }
