"""Issue 16 benchmark: ``equipot train`` with intra-op threads vs data-parallel processes.

Same config, same data, same batch size per optimiser step, on this machine's cores: one
process with ``--threads`` threads against ``--threads`` DDP processes (gloo) of 1 thread each
(``equipot train --nproc``; each process takes batch_size / nproc frames of every step, so the
steps are the same). Seconds per epoch are the spacing of the run's ``log.csv`` ``time_s``
column after the first epoch (training + validation of the 50 validation frames). Model: the
benchmarks' 64-channel size (benchmarks/train_speed.py), float32, batch 6.

    python benchmarks/train_parallel.py --systems ethanol aspirin --frames 200 --epochs 4

Writes benchmarks/out/train_parallel.json and train_parallel.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_speed import MODEL, write_frames  # noqa: E402


def config(paths: dict, dtype: str, threads: int, epochs: int, out: Path) -> dict:
    keys = {"energy_key": "REF_energy", "forces_key": "REF_forces"}
    return {
        "seed": 1,
        "dtype": dtype,
        "num_threads": threads,
        "data": {
            "train": {"path": str(paths["train"]), **keys},
            "valid": {"path": str(paths["valid"]), **keys},
        },
        "model": MODEL,
        "loss": {"energy_weight": 1.0, "forces_weight": 100.0},
        "optim": {"batch_size": 6, "lr": 0.01, "amsgrad": True, "max_epochs": epochs},
        "output": {"dir": str(out), "progress": False, "plot": False},
    }


def run(paths: dict, dtype: str, nproc: int, threads: int, epochs: int, root: Path) -> dict:
    out = root / f"{dtype}_{nproc}x{threads}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg = out / "config.yaml"
    cfg.write_text(yaml.safe_dump(config(paths, dtype, threads, epochs, out / "run")))
    exe = Path(sys.executable).parent / "equipot"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(exe), "train", str(cfg), "--nproc", str(nproc)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"equipot train failed ({nproc}×{threads}):\n{done.stderr[-3000:]}")
    with open(out / "run" / "log.csv") as f:
        times = [float(r["time_s"]) for r in csv.DictReader(f)]
    spacing = np.diff(times)
    return {
        "nproc": nproc,
        "threads": threads,
        "epoch_s": float(np.median(spacing)),
        "epoch_s_all": spacing.tolist(),
        "wall_s": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=["ethanol", "aspirin"])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "out")
    args = p.parse_args()
    load = {"before": os.getloadavg()}
    rows = []
    for system in args.systems:
        root = args.out / "train_parallel" / system
        paths = write_frames(system, args.frames, root)
        for nproc, threads in ((1, args.threads), (args.threads, 1)):
            row = {"system": system, **run(paths, args.dtype, nproc, threads, args.epochs, root)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    load["after"] = os.getloadavg()
    result = json.dumps({"load": load, "rows": rows}, indent=1)
    (args.out / "train_parallel.json").write_text(result)
    lines = [
        f"equipot train, {args.dtype}, {args.frames} frames, batch 6, 64-channel model, "
        f"median s/epoch of epochs 2–{args.epochs} (incl. validation). Load average before / "
        f"after: {load['before'][0]:.2f} / {load['after'][0]:.2f}.",
        "",
        "| system | processes × threads | s/epoch | frames/s | whole command (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['nproc']} × {r['threads']} | {r['epoch_s']:.2f} | "
            f"{args.frames / r['epoch_s']:.0f} | {r['wall_s']:.0f} |"
        )
    table = "\n".join(lines)
    (args.out / "train_parallel.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
