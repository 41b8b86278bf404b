"""Issue 4: NVE energy conservation of a trained model, float64 and float32.

fcc Cu (3×3×3 conventional cell, 108 atoms) relaxed with the model, started at 2·T so that it
equilibrates near T, integrated with velocity Verlet for ``--ps`` picoseconds at several time
steps. Drift: slope of a linear fit of the total energy against time, per atom; fluctuation:
standard deviation of the total energy per atom. Positions and momenta are integrated in
float64 in both cases; "float32" is the model's precision.

    python benchmarks/nve_drift.py --model benchmarks/out/properties_emt_cu_run/run/best.eqp

Writes benchmarks/out/nve_drift.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

from equipot.model.io import load_model
from equipot.sim import ModelPotential, SimState, nve, relax

OUT = Path(__file__).resolve().parent / "out"


def run(model, atoms, dtype: str, dt: float, ps: float, temperature: float) -> dict:
    pot = ModelPotential(model, dtype=dtype, skin=1.0)
    state = nve.init(SimState.from_atoms(atoms, temperature=2 * temperature, seed=0), pot)
    steps = round(1000 * ps / dt)
    total, kinetic = [], []
    start = time.perf_counter()
    for _ in range(steps):
        state = nve.step(state, pot, dt=dt)
        total.append((state.energy + state.kinetic_energy()).item())
        kinetic.append(state.temperature().item())
    wall = time.perf_counter() - start
    t_ps = np.arange(1, steps + 1) * dt * 1e-3
    n = len(atoms)
    return {
        "dtype": dtype,
        "dt_fs": dt,
        "steps": steps,
        "mean_temperature_K": float(np.mean(kinetic)),
        "drift_eV_per_atom_ps": float(np.polyfit(t_ps, np.array(total), 1)[0] / n),
        "fluctuation_eV_per_atom": float(np.std(total) / n),
        "steps_per_s": steps / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a Cu model (.eqp)")
    parser.add_argument("--ps", type=float, default=5.0)
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--dt", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, dtype=torch.float64)
    atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(3)
    atoms = relax(atoms, ModelPotential(model), method="fire", fmax=1e-4, cell=True).atoms()
    rows = []
    for dtype in ("float64", "float32"):
        for dt in args.dt:
            row = run(model, atoms, dtype, dt, args.ps, args.temperature)
            rows.append(row)
            print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "nve_drift.json").write_text(json.dumps({"model": str(args.model), "rows": rows}))
    lines = [
        f"NVE, {len(atoms)}-atom fcc Cu, {args.ps:g} ps per run, model `{args.model.name}`.",
        "",
        "| model dtype | Δt (fs) | ⟨T⟩ (K) | drift (eV/atom/ps) | σ(E_tot) (eV/atom) | steps/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['dt_fs']:g} | {r['mean_temperature_K']:.0f} | "
            f"{r['drift_eV_per_atom_ps']:.2e} | {r['fluctuation_eV_per_atom']:.2e} | "
            f"{r['steps_per_s']:.1f} |"
        )
    (OUT / "nve_drift.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
