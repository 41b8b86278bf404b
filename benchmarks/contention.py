"""Issue 16 benchmark: a small molecule through the calculator while another process is busy.

A 15-atom molecule (rMD17 toluene, frame 0, rattled anew for every call) is evaluated through
``EquipotCalculator`` (energy + forces) in a fresh child process, first on a quiet machine and
then while a competing process keeps 2 threads busy on the same cores (a PyTorch loop of
256×256 matrix products, as a training job would). Each case is one OpenMP setting of the
child: the defaults, ``OMP_WAIT_POLICY=passive`` (idle threads sleep at once instead of
spinning), and 1 thread. Model: the benchmarks' 64-channel size (benchmarks/speed.py), random
weights. Reports median and 90th percentile ms per call; the target is ≤ 3× the quiet time.

    python benchmarks/contention.py --calls 300

Run it on an otherwise quiet machine (the competitor is the only other load); writes
benchmarks/out/contention.json and contention.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RMD17 = HERE.parent.parent / "shared" / "data" / "rmd17"

CHILD = r"""
import json, os, sys, time
import numpy as np
import torch
from ase import Atoms
import equipot

calls, threads = int(sys.argv[1]), sys.argv[2]
if threads != "default":
    torch.set_num_threads(int(threads))
data = np.load(sys.argv[3])
atoms = Atoms(data["nuclear_charges"], data["coords"][0])
model = equipot.build_model(["H", "C", "O"], r_max=5.0, l_max=3, hidden_l_max=1, channels=64,
                            num_layers=2, correlation=3, num_radial=8,
                            radial_hidden=[64, 64, 64], avg_num_neighbors=20.0, seed=0)
atoms.calc = equipot.EquipotCalculator(model, dtype="float64")
rng = np.random.default_rng(0)
start = atoms.positions.copy()
times = []
for k in range(calls + 10):
    atoms.positions = start + rng.normal(0.0, 0.01, start.shape)
    t0 = time.perf_counter()
    atoms.get_forces()
    if k >= 10:
        times.append(time.perf_counter() - t0)
t = np.array(times) * 1e3
print(json.dumps({"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
                  "mean_ms": float(t.mean()), "threads": torch.get_num_threads(),
                  "atoms": len(atoms)}))
"""

COMPETITOR = r"""
import torch
torch.set_num_threads(2)
a = torch.randn(256, 256)
while True:
    b = a @ a
"""

SETTINGS = {  # name → (thread argument of the child, extra environment)
    "default": ("default", {}),
    "OMP_WAIT_POLICY=passive": ("default", {"OMP_WAIT_POLICY": "passive"}),
    "1 thread": ("1", {}),
    "GOMP_SPINCOUNT=10000": ("default", {"GOMP_SPINCOUNT": "10000"}),
    "GOMP_SPINCOUNT=3000": ("default", {"GOMP_SPINCOUNT": "3000"}),
    "GOMP_SPINCOUNT=1000": ("default", {"GOMP_SPINCOUNT": "1000"}),
    "GOMP_SPINCOUNT=100": ("default", {"GOMP_SPINCOUNT": "100"}),
}


_OMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def run_child(calls: int, setting: str, molecule: Path) -> dict:
    threads, extra = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in _OMP_VARIABLES}
    env.update(extra)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(calls), threads, str(molecule)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"child failed ({setting}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--molecule", type=Path, default=RMD17 / "rmd17_toluene_train_01.npz")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--out", type=Path, default=HERE / "out")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load = {"before": os.getloadavg()}
    rows = []
    for setting in args.settings:
        quiet = run_child(args.calls, setting, args.molecule)
        env = dict(os.environ, OMP_NUM_THREADS="2")
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
        try:
            time.sleep(2.0)  # the competitor is up and busy
            busy = run_child(args.calls, setting, args.molecule)
        finally:
            competitor.kill()
            competitor.wait()
        row = {"setting": setting, "quiet": quiet, "contended": busy}
        rows.append(row)
        print(json.dumps(row), flush=True)
    load["after"] = os.getloadavg()
    (args.out / "contention.json").write_text(json.dumps({"load": load, "rows": rows}, indent=1))
    base = rows[0]["quiet"]["median_ms"]
    lines = [
        f"rMD17 toluene ({rows[0]['quiet']['atoms']} atoms), energy + forces through the "
        f"calculator, float64, 64-channel model, {args.calls} calls per case; competitor: a "
        f"2-thread PyTorch matmul loop. Load average before / after: {load['before'][0]:.2f} / "
        f"{load['after'][0]:.2f}.",
        "",
        "| child setting | threads | quiet median (ms) | quiet p90 | contended median (ms) "
        "| contended p90 | contended / quiet default |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        q, c = r["quiet"], r["contended"]
        lines.append(
            f"| {r['setting']} | {q['threads']} | {q['median_ms']:.2f} | {q['p90_ms']:.2f} | "
            f"{c['median_ms']:.2f} | {c['p90_ms']:.2f} | {c['median_ms'] / base:.1f}× |"
        )
    table = "\n".join(lines)
    (args.out / "contention.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
