"""Cost of long-range electrostatics: a 3,000-atom water box with and without it, and how
the mesh method scales from 1,000 to 32,000 atoms.

A. Energy + forces through ``EquipotCalculator`` (the default execution) for a local model and
   the same model with latent charges (Gaussian charges, s = 1 Å, accuracy 1e-5: PME), random
   weights, same architecture; median of ``--repeats`` calls after a warm-up.
B. The electrostatic energy + forces (autograd) of random charges on water boxes of 1k–32k
   atoms: smooth PME with the model's settings, Ewald where it is affordable, against N log N.

    flock /work/coord/cpu.lock python benchmarks/long_range_cost.py

Prints both tables (with ``uptime`` before and after) and writes
``benchmarks/out/long_range_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

ARCHITECTURE = {"l_max": 2, "channels": 32, "num_layers": 2, "correlation": 3, "r_max": 5.0}


def water_box(n_molecules: int, seed: int = 0) -> Atoms:
    """Water at 1 g/cm³: molecules on a jittered cubic lattice, random orientations."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    side = int(np.ceil(n_molecules ** (1 / 3)))
    length = (n_molecules / 0.03343) ** (1 / 3)
    spacing = length / side
    water = molecule("H2O")
    water.positions -= water.get_center_of_mass()
    sites = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)])
    sites = sites[rng.permutation(len(sites))[:n_molecules]]
    positions = []
    for site in sites:
        rotation = Rotation.random(random_state=rng)
        centre = (site + 0.5 + rng.uniform(-0.1, 0.1, 3)) * spacing
        positions.append(rotation.apply(water.positions) + centre)
    symbols = "OH2" * n_molecules
    return Atoms(symbols, positions=np.concatenate(positions), cell=[length] * 3, pbc=True)


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def model_cost(atoms: Atoms, dtype: str, repeats: int) -> dict:
    import equipot

    out = {}
    for name, extra in (("local", {}), ("latent", {"long_range": {"charges": "latent"}})):
        model = equipot.build_model(["H", "O"], seed=0, **ARCHITECTURE, **extra)
        calc = equipot.EquipotCalculator(model, dtype=dtype)

        def call(calc=calc):
            calc.reset()
            calc.calculate(atoms, ["energy", "forces"])

        out[name] = timed(call, repeats)
    out["added"] = out["latent"] / out["local"] - 1.0
    return out


def mesh_cost(atoms: Atoms, method: str, repeats: int) -> float:
    from equipot.electrostatics import coulomb_energy

    rng = np.random.default_rng(1)
    charges = torch.as_tensor(rng.normal(0.0, 0.5, len(atoms)))
    charges -= charges.mean()
    graph_positions = torch.as_tensor(atoms.positions)
    cell = torch.as_tensor(atoms.cell.array)

    def call():
        positions = graph_positions.clone().requires_grad_(True)
        from equipot.graph import AtomicGraph

        graph = AtomicGraph(
            positions=positions,
            atomic_numbers=torch.as_tensor(atoms.numbers),
            batch=torch.zeros(len(atoms), dtype=torch.int64),
            edge_index=torch.zeros(2, 0, dtype=torch.int64),
            edge_shift=torch.zeros(0, 3, dtype=torch.float64),
            cell=cell.unsqueeze(0),
            pbc=torch.ones(1, 3, dtype=torch.bool),
            n_atoms=torch.tensor([len(atoms)]),
            n_edges=torch.tensor([0]),
        )
        energy = coulomb_energy(graph, charges, method=method, smearing=1.0, accuracy=1e-5)
        torch.autograd.grad(energy.sum(), positions)

    return timed(call, repeats)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000, 32000]
    )
    # plain Ewald with autograd at 4,000 atoms was OOM-killed at 22.5 GB on the 24 GB machine
    # (its structure factors are N × K); 2,000 atoms took 12 s and fits
    parser.add_argument("--ewald-max", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/long_range_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("EQUIPOT_THREADS", "2")))
    report = {"uptime_before": uptime()}
    print(report["uptime_before"])
    box = water_box(1000)
    print("A. 3,000-atom water box, energy + forces (ms)")
    print("| dtype | local | latent charges (PME) | added |")
    print("|---|---:|---:|---:|")
    for dtype in ("float32", "float64"):
        cost = model_cost(box, dtype, args.repeats)
        report[f"model_{dtype}"] = cost
        print(
            f"| {dtype} | {1e3 * cost['local']:.0f} | {1e3 * cost['latent']:.0f} "
            f"| {100 * cost['added']:.0f} % |"
        )
    print("B. electrostatics alone, energy + forces, random charges on water (ms)")
    print("| atoms | PME | PME µs/atom | PME / (N log N), rel. to 1k | Ewald |")
    print("|---:|---:|---:|---:|---:|")
    rows = []
    for n in args.sizes:
        atoms = water_box(n // 3, seed=2)
        pme = mesh_cost(atoms, "pme", max(2, args.repeats // 2))
        ewald = mesh_cost(atoms, "ewald", 2) if len(atoms) <= args.ewald_max else None
        rows.append({"atoms": len(atoms), "pme_s": pme, "ewald_s": ewald})
        base = rows[0]["pme_s"] / (rows[0]["atoms"] * np.log(rows[0]["atoms"]))
        scaled = pme / (len(atoms) * np.log(len(atoms))) / base
        ewald_text = f"{1e3 * ewald:.0f}" if ewald is not None else "–"
        print(
            f"| {len(atoms)} | {1e3 * pme:.0f} | {1e6 * pme / len(atoms):.1f} | {scaled:.2f} "
            f"| {ewald_text} |"
        )
    report["mesh"] = rows
    report["uptime_after"] = uptime()
    print(report["uptime_after"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
