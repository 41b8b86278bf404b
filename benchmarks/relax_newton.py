"""Newton (exact Hessian, trust region) vs L-BFGS vs FIRE on distorted aspirin, and the time
of one exact aspirin Hessian: the second-order C++ engine vs the autograd reference.

The Hessian section times ``hessian_from_graph`` at the minimum (float64, best of
``--hessian-repeats``) for the engine (frozen model, kernels on: what Newton uses) and for the
reference double backward through the PyTorch modules (kernels off), and prints the largest
difference between the two relative to the largest Hessian element.

The reference minimum is found first (Newton to fmax 1e-6 eV/Å from rMD17 aspirin frame 0) and
checked to be a genuine minimum (all non-rigid Hessian eigenvalues positive). Each trial
rattles it (Gaussian, ``--rattle`` Å per coordinate) and relaxes to fmax 1e-4 eV/Å with each
method. Iterations = optimiser steps (one energy/force evaluation each; Newton also one
Hessian per step; the hybrid only every ``--refresh`` accepted steps, BFGS-updated between).

    python benchmarks/relax_newton.py --model runs/rmd17-aspirin/best.eqp
    python benchmarks/relax_newton.py            # random model (development only)

Writes benchmarks/out/relax_newton.json and benchmarks/out/relax_newton.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

import equipot
from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.model.second_order import engine_runs
from equipot.physics.derivatives import hessian_from_graph
from equipot.physics.modes import project_out, rigid_body_modes
from equipot.sim.potentials import ModelPotential
from equipot.sim.relax import relax

HERE = Path(__file__).resolve().parent
ASPIRIN = Path("/work/shared/data/rmd17/rmd17_aspirin_train_01.npz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="trained model (.eqp)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rattle", type=float, default=0.05, help="Å, std per coordinate")
    parser.add_argument("--fmax", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hessian-repeats", type=int, default=5)
    parser.add_argument("--refresh", type=int, default=10, help="Newton's hessian_refresh")
    parser.add_argument(
        "--hessian-only",
        action="store_true",
        help="only time the exact Hessian (at rMD17 frame 0; no relaxations)",
    )
    parser.add_argument("--channels", type=int, default=64, help="random model's channels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        model = equipot.load_model(args.model)
        label = str(args.model)
    else:
        model = equipot.build_model(
            ["H", "C", "O"],
            r_max=5.0,
            l_max=3,
            hidden_l_max=1,
            channels=args.channels,
            num_layers=2,
            correlation=3,
        )
        label = "random (untrained) model — development only"
    pot = ModelPotential(model, dtype="float64")
    data = np.load(ASPIRIN)
    atoms = Atoms(data["nuclear_charges"], data["coords"][0])
    if args.hessian_only:
        timing = time_hessians(model, atoms, args.hessian_repeats)
        print(json.dumps({"model": label, "threads": args.threads, "hessian": timing}))
        return
    ref = relax(atoms, pot, method="newton", fmax=1e-6, max_steps=200)
    minimum = ref.atoms()
    hessian = equipot.hessian(model, minimum)
    modes = rigid_body_modes(minimum.positions)
    eig = np.linalg.eigvalsh(project_out(hessian, modes))
    internal = np.sort(eig)[len(modes) :]  # drop the 6 (now zero) rigid-body eigenvalues
    print(
        f"reference minimum: converged={ref.converged} in {ref.iterations} Newton steps, "
        f"lowest internal Hessian eigenvalue {internal[0]:.4f} eV/Å²"
    )
    timing = time_hessians(model, minimum, args.hessian_repeats)
    print(json.dumps({"hessian": timing}), flush=True)
    methods = {
        "newton": ("newton", {}),
        f"newton, exact Hessian every {args.refresh} steps (BFGS between)": (
            "newton",
            {"hessian_refresh": args.refresh},
        ),
        "lbfgs": ("lbfgs", {}),
        "fire": ("fire", {}),
    }
    rows = []
    for trial in range(args.trials):
        start = minimum.copy()
        start.positions += np.random.default_rng(trial).normal(0.0, args.rattle, (len(start), 3))
        row = {"trial": trial}
        for name, (method, options) in methods.items():
            t0 = time.perf_counter()
            r = relax(start, pot, method=method, fmax=args.fmax, max_steps=5000, **options)
            row[name] = {
                "converged": r.converged,
                "iterations": r.iterations,
                "evaluations": r.evaluations,
                "hessians": r.hessians,
                "wall_s": time.perf_counter() - t0,
                "energy_above_min_eV": r.energy - ref.energy,
            }
        row["lbfgs_over_newton"] = row["lbfgs"]["iterations"] / max(row["newton"]["iterations"], 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {
        m: {
            "mean_iterations": float(np.mean([r[m]["iterations"] for r in rows])),
            "mean_wall_s": float(np.mean([r[m]["wall_s"] for r in rows])),
            "all_converged": all(r[m]["converged"] for r in rows),
        }
        for m in methods
    }
    meta = {
        "model": label,
        "rattle_A": args.rattle,
        "fmax": args.fmax,
        "threads": args.threads,
        "reference_newton_steps": ref.iterations,
        "lowest_internal_eigenvalue_eV_A2": float(internal[0]),
        "repulsion_term": "repulsion" in model.terms,
        "hessian": timing,
    }
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "relax_newton.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "trials": rows}, indent=2)
    )
    lines = [
        f"Distorted aspirin (rattle {args.rattle} Å), fmax {args.fmax} eV/Å, model: {label}",
        "",
        "| method | mean iterations | mean wall time (s) | all converged |",
        "|---|---|---|---|",
    ]
    for m, s in summary.items():
        lines.append(
            f"| {m} | {s['mean_iterations']:.1f} | {s['mean_wall_s']:.2f} | {s['all_converged']} |"
        )
    ratio = summary["lbfgs"]["mean_iterations"] / summary["newton"]["mean_iterations"]
    wall = summary["lbfgs"]["mean_wall_s"] / summary["newton"]["mean_wall_s"]
    lines += [
        "",
        f"L-BFGS / Newton iterations: {ratio:.1f}×, wall time: {wall:.2f}×",
        "",
        f"Exact Hessian ({len(minimum)} atoms, float64, best of {args.hessian_repeats}): "
        f"engine {timing['engine_s'] * 1e3:.1f} ms, autograd reference "
        f"{timing['autograd_s'] * 1e3:.1f} ms ({timing['speedup']:.1f}×; CPU time "
        f"{timing['engine_cpu_s'] * 1e3:.1f} vs {timing['autograd_cpu_s'] * 1e3:.1f} ms, "
        f"{timing['cpu_speedup']:.1f}×), "
        f"max |ΔH| / max |H| = {timing['relative_difference']:.1e}",
    ]
    (out / "relax_newton.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def time_hessians(model, atoms: Atoms, repeats: int) -> dict:
    """Best-of-``repeats`` wall time of one exact Hessian, engine vs autograd reference."""
    fast = frozen_copy(model, torch.float64, "cpu")
    slow = frozen_copy(model, torch.float64, "cpu").set_execution(
        kernels=False, memory_efficient=False
    )
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    out = {}
    for name, m in (("engine", fast), ("autograd", slow)):
        times, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.enable_grad():
                h = hessian_from_graph(m, graph).detach()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[name] = (min(times), h)
        out[f"{name}_cpu_s"] = min(cpu)
    if engine_runs(fast) != repeats or engine_runs(slow) != 0:
        raise RuntimeError("the engine did not compute the fast Hessians")
    (t_fast, h_fast), (t_slow, h_slow) = out["engine"], out["autograd"]
    return {
        "engine_s": t_fast,
        "autograd_s": t_slow,
        "speedup": t_slow / t_fast,
        "engine_cpu_s": out["engine_cpu_s"],  # process time (all threads): robust to load
        "autograd_cpu_s": out["autograd_cpu_s"],
        "cpu_speedup": out["autograd_cpu_s"] / out["engine_cpu_s"],
        "relative_difference": float((h_fast - h_slow).abs().max() / h_slow.abs().max()),
    }


if __name__ == "__main__":
    main()
