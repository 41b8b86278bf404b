"""MD speed: equipot's engine vs ASE VelocityVerlet driving MACE's calculator / our calculator.

Systems: aspirin (21 atoms, rMD17 frame 0), fcc Cu 2,048 atoms (8×8×8 conventional cells,
a = 3.61 Å, rattled 0.05 Å) and, with ``--only cu32000``, fcc Cu 32,000 atoms (20×20×20; MACE
runs under a 20 GB address-space limit there and is reported as out of memory if it needs
more). Models of the same size on both sides: 64×0e + 64×1o hidden features (MACE) /
channels 64, hidden_l_max 1 (equipot), spherical harmonics up to l = 3, 2 layers,
correlation 3, r_max 5 Å, random weights. NVE, Δt = 0.5 fs, start at 300 K.
Every engine runs in its own process with 2 torch threads; MACE runs in its own venv.

    python benchmarks/md_speed.py                 # everything (≈ 10 minutes)
    python benchmarks/md_speed.py --only aspirin  # one system

Writes benchmarks/out/md_speed.json and benchmarks/out/md_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASPIRIN = Path("/work/shared/data/rmd17/rmd17_aspirin_train_01.npz")
MACE_PYTHON = Path("/work/peers/mace/bin/python")
THREADS = 2
STEPS = {"aspirin": (20, 200), "cu2048": (1, 3), "cu32000": (1, 1)}  # (warm-up, timed): ours
MACE_STEPS = {"aspirin": (10, 100), "cu2048": (1, 2), "cu32000": (1, 1)}
MACE_MEMORY_LIMIT = 20 * 2**30  # bytes of address space for MACE's process at 32,000 atoms

STRUCTURE = f"""
import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
def structure(name):
    if name == "aspirin":
        d = np.load("{ASPIRIN}")
        atoms = Atoms(d["nuclear_charges"], d["coords"][0])
    else:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(20 if name == "cu32000" else 8)
        atoms.rattle(0.05, seed=1)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    return atoms
"""

OURS = (
    STRUCTURE
    + """
import json, sys, time, torch
torch.set_num_threads({threads})
import equipot
from ase import units
from ase.md.verlet import VelocityVerlet
from equipot.sim import nve
from equipot.sim.potentials import ModelPotential
from equipot.sim.state import SimState
name, dtype, engine = sys.argv[1:4]
warm, steps = int(sys.argv[4]), int(sys.argv[5])
model = equipot.build_model(["H", "C", "O", "Cu"], r_max=5.0, l_max=3, hidden_l_max=1,
                            channels=64, num_layers=2, correlation=3, avg_num_neighbors=20.0)
atoms = structure(name)
if engine == "equipot":
    pot = ModelPotential(model, dtype=dtype, skin=1.0)
    state = nve.init(SimState.from_atoms(atoms), pot)
    for _ in range(warm):
        state = nve.step(state, pot, dt=0.5)
    start = time.perf_counter()
    for _ in range(steps):
        state = nve.step(state, pot, dt=0.5)
    state.energy.item()
    wall = time.perf_counter() - start
    extra = {{"neighbour_list_builds": pot.neighbors.rebuilds}}
else:
    atoms.calc = equipot.EquipotCalculator(model, dtype=dtype)
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(warm)
    start = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - start
    extra = {{}}
print(json.dumps({{"steps": steps, "wall_s": wall, **extra}}))
"""
)

MACE = (
    STRUCTURE
    + """
import json, sys, time, numpy as np, torch
torch.set_num_threads({threads})
name, dtype, warm, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_default_dtype(torch.float64 if dtype == "float64" else torch.float32)
from ase import units
from ase.md.verlet import VelocityVerlet
from e3nn import o3
from mace import modules
from mace.calculators import MACECalculator
Z = [1, 6, 8, 29]
block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
model = modules.ScaleShiftMACE(
    r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, interaction_cls=block,
    interaction_cls_first=block, num_interactions=2, num_elements=len(Z),
    hidden_irreps=o3.Irreps("64x0e+64x1o"), MLP_irreps=o3.Irreps("16x0e"),
    atomic_energies=np.zeros(len(Z)), avg_num_neighbors=20.0, atomic_numbers=Z,
    correlation=3, gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
    atomic_inter_scale=1.0, atomic_inter_shift=0.0)
atoms = structure(name)
atoms.calc = MACECalculator(models=model, device="cpu", default_dtype=dtype)
dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
dyn.run(warm)
start = time.perf_counter()
dyn.run(steps)
wall = time.perf_counter() - start
print(json.dumps({{"steps": steps, "wall_s": wall}}))
"""
)


def _run(
    python: str, script: str, args: list[str], env: dict | None = None, memory: int = 0
) -> dict:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    proc = subprocess.run(
        [python, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=HERE.parent,
        preexec_fn=limit if memory else None,
    )
    if proc.returncode != 0 and memory and "memory" in proc.stderr.lower():
        return {"out_of_memory": True, "stderr_tail": proc.stderr[-300:]}
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["aspirin", "cu2048", "cu32000"], default=None)
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--skip-mace", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke test: aspirin, 3 steps")
    args = parser.parse_args()
    if args.quick:
        for table in (STEPS, MACE_STEPS):
            table["aspirin"] = (1, 3)
    systems = [args.only] if args.only else ["aspirin", "cu2048"]
    results = []
    for name in systems:
        for dtype in args.dtypes.split(","):
            row = {"system": name, "dtype": dtype}
            warm, steps = STEPS[name]
            ours = _run(
                sys.executable, OURS.format(threads=THREADS), [name, dtype, "equipot", warm, steps]
            )
            row["equipot_steps_per_s"] = ours["steps"] / ours["wall_s"]
            row["equipot_neighbour_list_builds"] = ours["neighbour_list_builds"]
            ase_ours = _run(
                sys.executable,
                OURS.format(threads=THREADS),
                [name, dtype, "ase", warm, max(2, steps // 2)],
            )
            row["ase_equipot_steps_per_s"] = ase_ours["steps"] / ase_ours["wall_s"]
            if not args.skip_mace:
                mwarm, msteps = MACE_STEPS[name]
                mace = _run(
                    str(MACE_PYTHON),
                    MACE.format(threads=THREADS),
                    [name, dtype, mwarm, msteps],
                    env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
                    memory=MACE_MEMORY_LIMIT if name == "cu32000" else 0,
                )
                if mace.get("out_of_memory"):
                    row["ase_mace"] = f"out of memory in {MACE_MEMORY_LIMIT / 2**30:.0f} GB"
                else:
                    row["ase_mace_steps_per_s"] = mace["steps"] / mace["wall_s"]
                    row["speedup_vs_ase_mace"] = (
                        row["equipot_steps_per_s"] / row["ase_mace_steps_per_s"]
                    )
            row["speedup_vs_ase_equipot"] = (
                row["equipot_steps_per_s"] / row["ase_equipot_steps_per_s"]
            )
            print(json.dumps(row), flush=True)
            results.append(row)
    meta = {
        "threads": THREADS,
        "timestep_fs": 0.5,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
    }
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / "md_speed.json"
    if path.exists() and (args.only or args.dtypes != "float64,float32"):
        # a partial rerun replaces only its own rows
        old = json.loads(path.read_text())
        done = {(r["system"], r["dtype"]) for r in results}
        kept = [r for r in old["results"] if (r["system"], r["dtype"]) not in done]
        results = sorted(kept + results, key=lambda r: (r["system"], r["dtype"] == "float32"))
        meta = {**old.get("meta", {}), "rerun": meta}
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        "| system | dtype | equipot engine (steps/s) | ASE + equipot calc | ASE + MACE | "
        "engine / MACE+ASE |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        mace = r.get("ase_mace_steps_per_s")
        lines.append(
            f"| {r['system']} | {r['dtype']} | {r['equipot_steps_per_s']:.3g} | "
            f"{r['ase_equipot_steps_per_s']:.3g} | {mace:.3g} | "
            f"{r['speedup_vs_ase_mace']:.1f}× |"
            if mace
            else f"| {r['system']} | {r['dtype']} | {r['equipot_steps_per_s']:.3g} | "
            f"{r['ase_equipot_steps_per_s']:.3g} | – | – |"
        )
    (out / "md_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
