"""Issue 2 benchmark: one energy+forces evaluation through the ASE calculator, equipot vs MACE.

Every (code, system, dtype) case runs in a fresh subprocess with the same thread count, so peak
memory (ru_maxrss of the child, imports included) is per case, and both codes are measured in
the same run. Systems: ethanol (9 atoms) and aspirin (21) from rMD17 frame 0 (files in
benchmarks/structures), fcc Cu 256 and 2,048 atoms (a = 3.61 Å, rattled 0.05 Å). Models of the
same size: 64 channels, hidden irreps 64×0e + 64×1o (L = 1), spherical harmonics to l = 3,
2 layers, correlation 3, r_max 5 Å, 8 Bessel functions, radial MLP [64, 64, 64], random weights.

    python benchmarks/speed.py --mace-python /work/peers/mace/bin/python

equipot runs as its calculator does by default: the whole-model C++ inference pass with
tabulated radial functions (equipot/model/inference.py); ``--exact-radial`` evaluates the
radial MLP instead (write that run elsewhere with ``--out``).

Writes benchmarks/out/speed.json and speed.md. Peak RSS includes the interpreter, torch and the
model; "evaluation memory" is peak RSS minus the RSS just before the first call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {  # system → (calls to time, warm-up calls)
    "ethanol": (60, 5),
    "aspirin": (60, 5),
    "Cu256": (12, 2),
    "Cu2048": (3, 1),
}

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
import torch
from ase.build import bulk
from ase.io import read

code, system, dtype, repeats, warmup = sys.argv[1:6]
repeats, warmup = int(repeats), int(warmup)
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
if system in ("ethanol", "aspirin"):
    atoms = read(os.path.join(os.environ["BENCH_STRUCTURES"], system + ".xyz"))
    elements = ["H", "C", "O"]
else:
    reps = {"Cu256": 4, "Cu2048": 8}[system]
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(reps)
    atoms.rattle(0.05, seed=1)
    elements = ["Cu"]
if code == "equipot":
    import equipot
    model = equipot.build_model(elements, r_max=5.0, l_max=3, hidden_l_max=1, channels=64,
                                num_layers=2, correlation=3, num_radial=8,
                                radial_hidden=[64, 64, 64], avg_num_neighbors=20.0, seed=0)
    calc = equipot.EquipotCalculator(model, dtype=dtype)
    if os.environ.get("BENCH_EXACT_RADIAL") == "1":  # radial MLP evaluated, not tabulated
        calc.model.inference_radial_table = 0
else:
    from ase.data import atomic_numbers
    from e3nn import o3
    from mace import modules
    from mace.calculators import MACECalculator
    torch.set_default_dtype(getattr(torch, dtype))  # MACE builds its model in the default dtype
    z = [atomic_numbers[e] for e in elements]
    model = modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(z), hidden_irreps=o3.Irreps("64x0e+64x1o"),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(z)),
        avg_num_neighbors=20.0, atomic_numbers=z, correlation=3,
        gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
        atomic_inter_scale=1.0, atomic_inter_shift=0.0)
    calc = MACECalculator(models=model, device="cpu", default_dtype=dtype)
atoms.calc = calc
def rss_gb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1e6
base_rss = rss_gb()  # imports + model built: what the evaluation itself adds comes on top
times = []
for k in range(warmup + repeats):
    atoms.positions[0, 0] += 1e-4  # a new geometry every call: no cached results
    t0 = time.perf_counter()
    atoms.get_potential_energy()
    atoms.get_forces()
    if k >= warmup:
        times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": float(np.median(times)), "min_s": float(np.min(times)),
                  "calls": repeats, "atoms": len(atoms),
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "base_rss_gb": base_rss}))
"""


def run_case(
    python: str, code: str, system: str, dtype: str, threads: int, exact_radial: bool = False
) -> dict:
    repeats, warmup = CASES[system]
    if code == "mace" and system == "Cu2048":
        repeats = 2
    env = dict(os.environ, BENCH_THREADS=str(threads), BENCH_STRUCTURES=str(HERE / "structures"))
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["BENCH_EXACT_RADIAL"] = "1" if exact_radial else "0"
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # mace-torch's e3nn 0.4.4 predates torch 2.6
    out = subprocess.run(
        [python, "-c", CHILD, code, system, dtype, str(repeats), str(warmup)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{code} {system} {dtype} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mace-python", default="/work/peers/mace/bin/python")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=list(CASES))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument(
        "--exact-radial",
        action="store_true",
        help="equipot evaluates its radial MLP instead of the tabulated radial functions",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for system in args.systems:
        for dtype in args.dtypes:
            ours = run_case(
                sys.executable, "equipot", system, dtype, args.threads, args.exact_radial
            )
            mace = run_case(args.mace_python, "mace", system, dtype, args.threads)
            row = {
                "system": system,
                "atoms": ours["atoms"],
                "dtype": dtype,
                "equipot_ms": 1e3 * ours["median_s"],
                "mace_ms": 1e3 * mace["median_s"],
                "speedup": mace["median_s"] / ours["median_s"],
                "equipot_ms_per_atom": 1e3 * ours["median_s"] / ours["atoms"],
                "equipot_peak_gb": ours["peak_rss_gb"],
                "mace_peak_gb": mace["peak_rss_gb"],
                "memory_ratio": ours["peak_rss_gb"] / mace["peak_rss_gb"],
                "equipot_eval_gb": ours["peak_rss_gb"] - ours["base_rss_gb"],
                "mace_eval_gb": mace["peak_rss_gb"] - mace["base_rss_gb"],
            }
            rows.append(row)
            print(
                f"{system:8s} {dtype}: equipot {row['equipot_ms']:9.1f} ms  MACE "
                f"{row['mace_ms']:9.1f} ms  speed-up {row['speedup']:5.1f}x  peak "
                f"{row['equipot_peak_gb']:.2f} / {row['mace_peak_gb']:.2f} GB",
                flush=True,
            )
    (args.out / "speed.json").write_text(json.dumps(rows, indent=2))
    lines = [
        f"Energy + forces through the ASE calculator, median per call, {args.threads} threads.",
        "",
        "| system | atoms | dtype | equipot (ms) | MACE (ms) | speed-up | equipot ms/atom "
        "| peak RSS equipot / MACE (GB) | memory ratio | evaluation memory equipot / MACE (GB) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['atoms']} | {r['dtype']} | {r['equipot_ms']:.1f} | "
            f"{r['mace_ms']:.1f} | {r['speedup']:.1f}× | {r['equipot_ms_per_atom']:.3f} | "
            f"{r['equipot_peak_gb']:.2f} / {r['mace_peak_gb']:.2f} | {r['memory_ratio']:.2f} | "
            f"{r['equipot_eval_gb']:.2f} / {r['mace_eval_gb']:.2f} |"
        )
    (args.out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
