"""GFN2-xTB MD of ethanol at 300, 600 and 900 K for the uncertainty / active-learning
benchmarks (issue 13).

    pip install -e ".[xtb]"
    flock /work/coord/cpu.lock python benchmarks/uq/xtb_data.py --out benchmarks/out/uq/xtb

Langevin MD (Δt = 0.5 fs, τ = 100 fs) with tblite's GFN2-xTB, 0.5 ps equilibration, a frame
every 10 fs; two independent runs (seeds) per temperature. Writes ``ethanol-<T>-<run>.extxyz``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ase.io import read, write
from emt_data import run


def xtb():
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/uq/xtb"))
    p.add_argument("--frames", type=int, default=150, help="frames per run")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    start_structure = read(Path(__file__).resolve().parents[1] / "structures" / "ethanol.xyz")
    for temperature in (300, 600, 900):
        for run_index in range(2):
            path = args.out / f"ethanol-{temperature}-{run_index}.extxyz"
            if path.exists():
                continue
            start = time.perf_counter()
            frames = run(
                start_structure,
                float(temperature),
                args.frames,
                seed=31 * run_index + temperature,
                every=20,
                dt=0.5,
                calculator=xtb,
                equilibration=1000,
            )
            for f in frames:
                f.info["config_type"] = f"T{temperature}"
            write(path, frames, format="extxyz")
            elapsed = time.perf_counter() - start
            print(f"{path}: {len(frames)} frames in {elapsed:.0f} s", flush=True)


if __name__ == "__main__":
    main()
