"""LAMMPS (pair_style equipot) steps/s on 1 and 2 MPI ranks vs equipot's own MD engine.

Same model and systems as benchmarks/md_speed.py (random weights, channels 64, hidden l ≤ 1,
l_max 3, 2 layers, correlation 3, r_max 5 Å, ZBL repulsion on as in every default model;
NVE, Δt = 0.5 fs, 300 K start): fcc Cu 2,048 and 32,000 atoms (a = 3.61 Å) and aspirin in a
periodic 30 Å box. On this 2-core machine: LAMMPS as 1 rank × 1 thread, 1 rank × 2 threads
and 2 ranks × 1 thread; our engine (equipot.sim nve, same model file) with 1 and 2 threads.
Parallel efficiency = steps/s(2 ranks) / (2 · steps/s(1 rank × 1 thread)). On a shared
machine each row also has its CPU use: LAMMPS's "% CPU use" line (user time / wall) and the
process's user and system seconds; user and system time / wall for our engine. The pair style
reports its time in ghost-feature exchanges (its `finish()` line in the log).
`--memory N [N ...]` runs fcc Cu with 4·N³ atoms on one rank (`--memory-threads`, default 1)
for 1 step (`--memory-steps 0`: one force evaluation, `run 0`) and reports the peak RSS (memory
per atom; a linear fit a + b·atoms extrapolates to 10⁶ atoms; N = 63 is 1,000,188 atoms).
`--peers` also runs benchmarks/md_speed.py (our engine, ASE + our calculator, ASE + MACE; float64,
2 threads) for the same systems in the same invocation.

    /work/coord/cpuslot --both python benchmarks/lammps_speed.py --systems aspirin cu2048

Writes benchmarks/out/lammps_speed_<systems>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
CELLS = {"cu2048": 8, "cu32000": 20}


def _model(path: Path) -> Path:
    import equipot
    from equipot.lammps import export_model

    model = equipot.build_model(
        ["H", "C", "O", "Cu"],
        r_max=5.0,
        l_max=3,
        channels=64,
        hidden_l_max=1,
        num_layers=2,
        correlation=3,
        seed=0,
        dtype="float64",
    )
    export_model(model, path)
    return path


def _structure(name: str):
    import numpy as np
    from ase.build import bulk

    if name == "aspirin":
        from ase import Atoms

        d = np.load("/work/shared/data/rmd17/rmd17_aspirin_train_01.npz")  # rMD17 frame 0
        atoms = Atoms(d["nuclear_charges"], d["coords"][0])
        atoms.cell = [30.0, 30.0, 30.0]
        atoms.center()
        atoms.pbc = True
        return atoms
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(CELLS.get(name, 8))
    atoms.rattle(0.05, seed=1)
    return atoms


def _write_inputs(work: Path, name: str, model: Path, plugin: Path, steps: int) -> None:
    from ase.io import write

    atoms = _structure(name)
    elements = sorted(set(atoms.get_chemical_symbols()), key=["H", "C", "O", "Cu"].index)
    write(
        work / "data.lmp",
        atoms,
        format="lammps-data",
        specorder=elements,
        masses=True,
        units="metal",
        atom_style="atomic",
    )
    # steps = 0: one force evaluation only (`run 0`, the memory probe of the largest systems)
    runs = f"run 1\nrun {steps}" if steps else "run 0"
    (work / "in.bench").write_text(
        f"""units metal
atom_style atomic
boundary p p p
read_data data.lmp
plugin load {plugin}
pair_style equipot
pair_coeff * * {model} {" ".join(elements)}
neighbor 1.0 bin
velocity all create 300.0 12345 mom yes dist gaussian
timestep 0.0005
fix integrate all nve
thermo 1
{runs}
"""
    )


def _lammps(work: Path, ranks: int, threads: int, script: str = "in.bench") -> dict:
    """Run LAMMPS (under mpirun unless one rank) and read steps/s, exchange share, peak RSS."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    launch = [str(bindir / "mpirun"), "-np", str(ranks)] if ranks > 1 else []
    command = ["/usr/bin/time", "-f", "maxrss_kb %M user_s %U sys_s %S wall_s %e", *launch]
    command.append(str(bindir / "lmp"))
    command += ["-in", script, "-log", f"log.{ranks}x{threads}"]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", done.stdout)
    seconds, steps = float(loops[-1][0]), int(loops[-1][1])
    rss = int(re.findall(r"maxrss_kb (\d+)", done.stderr)[-1])
    row = {"steps": steps, "max_rss_gb_one_process": rss / 1e6}
    if steps:  # `run 0` (the memory probe) has no timed loop: see process_wall_s
        row["steps_per_s"] = steps / seconds
    row["process_wall_s"] = float(re.findall(r"wall_s ([0-9.]+)", done.stderr)[-1])
    cpu = re.findall(r"([0-9.]+)% CPU use with", done.stdout)
    if cpu and steps:  # LAMMPS's "% CPU use": user time / wall of the loop (system not counted)
        row["user_cpu_percent"] = float(cpu[-1])
    times = re.findall(r"user_s ([0-9.]+) sys_s ([0-9.]+)", done.stderr)
    if times:  # whole process (setup included), all ranks: kernel time = page faults etc.
        row["process_user_s"], row["process_sys_s"] = (float(t) for t in times[-1])
    share = re.findall(r"\(([0-9.eE+-]+) %, slowest rank", done.stdout)
    if share:  # the last run's share of pair-style time spent in ghost-feature exchanges
        row["exchange_percent"] = float(share[-1])
    return row


def _engine(name: str, model: Path, steps: int, threads: int) -> dict:
    import torch

    import equipot
    from equipot.sim import ModelPotential, SimState, nve

    torch.set_num_threads(threads)
    potential = ModelPotential(equipot.load_model(model), dtype="float64")
    state = nve.init(SimState.from_atoms(_structure(name), temperature=300.0, seed=0), potential)
    state = nve.step(state, potential, dt=0.5)
    start, before = time.perf_counter(), os.times()
    for _ in range(steps):
        state = nve.step(state, potential, dt=0.5)
    wall, after = time.perf_counter() - start, os.times()
    user, system = after.user - before.user, after.system - before.system
    return {
        "steps_per_s": steps / wall,
        "steps": steps,
        "user_cpu_percent": 100 * user / (wall * threads),
        "sys_cpu_percent": 100 * system / (wall * threads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="*", default=["aspirin", "cu2048", "cu32000"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--memory", nargs="*", type=int, default=[])
    parser.add_argument("--memory-threads", type=int, default=1)
    parser.add_argument(
        "--memory-steps", type=int, default=1, help="0: one force evaluation (`run 0`)"
    )
    parser.add_argument("--peers", action="store_true")
    args = parser.parse_args()
    from equipot.lammps import build_plugin

    OUT.mkdir(exist_ok=True)
    results = {"uptime_before": os.popen("uptime").read().strip(), "systems": {}}
    plugin, model = build_plugin(), _model(OUT / "lammps_bench_model.eqp")
    for name in args.systems:
        steps = args.steps * (20 if name == "aspirin" else 1)
        work = OUT / f"lammps_{name}"
        work.mkdir(exist_ok=True)
        _write_inputs(work, name, model, plugin, steps)
        row = {
            "lammps_1rank_1thread": _lammps(work, 1, 1),
            "lammps_1rank_2threads": _lammps(work, 1, 2),
            "lammps_2ranks_1thread": _lammps(work, 2, 1),
            "equipot_engine_1thread": _engine(name, model, steps, 1),
            "equipot_engine_2threads": _engine(name, model, steps, 2),
        }
        one = row["lammps_1rank_1thread"]["steps_per_s"]
        row["parallel_efficiency_2ranks"] = row["lammps_2ranks_1thread"]["steps_per_s"] / (2 * one)
        print(name, json.dumps(row), flush=True)
        results["systems"][name] = row
    for n_cells in args.memory:
        work = OUT / f"lammps_memory_{n_cells}"
        work.mkdir(exist_ok=True)
        CELLS[f"cu_{n_cells}"] = n_cells
        _write_inputs(work, f"cu_{n_cells}", model, plugin, args.memory_steps)
        row = _lammps(work, 1, args.memory_threads)
        row["atoms"] = 4 * n_cells**3
        row["kb_per_atom"] = row["max_rss_gb_one_process"] * 1e6 / row["atoms"]
        print("memory", json.dumps(row), flush=True)
        results.setdefault("memory", []).append(row)
    if len(results.get("memory", [])) >= 2:
        import numpy as np

        atoms = np.array([r["atoms"] for r in results["memory"]], dtype=float)
        gb = np.array([r["max_rss_gb_one_process"] for r in results["memory"]])
        slope, offset = np.polyfit(atoms, gb, 1)
        fit = {
            "gb_fixed": offset,
            "kb_per_atom_marginal": slope * 1e6,
            "gb_at_1e6_atoms_extrapolated": offset + slope * 1e6,
            "atoms_in_24_gb_extrapolated": (24.0 - offset) / slope,
        }
        print("memory fit", json.dumps(fit), flush=True)
        results["memory_fit"] = fit
    if args.peers:
        for name in args.systems:  # ASE + MACE (and ASE + our calculator), float64
            subprocess.run(
                [sys.executable, str(HERE / "md_speed.py"), "--only", name, "--dtypes", "float64"],
                check=True,
            )
    results["uptime_after"] = os.popen("uptime").read().strip()
    tag = "_".join(args.systems + [f"mem{n}" for n in args.memory])
    (OUT / f"lammps_speed_{tag}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
