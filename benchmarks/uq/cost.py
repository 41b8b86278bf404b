"""What uncertainty costs in MD (issue 13): last-layer variance + latent distance + force
ball on a single model, and a committee of 4, against the plain model's MD step.

    flock /work/coord/cpu.lock python benchmarks/uq/cost.py [--steps 200] [--systems water ethanol]

Same-size models (default ModelConfig: 32 channels, l_max 2, hidden L = 1, 2 layers,
correlation 3, radial MLP [64, 64, 64]; and the speed benchmark's 64 channels / l_max 3)
with random weights; the uncertainty fits come from :func:`fit_uncertainty` on a few frames
(the cost does not depend on what they were fitted to). Every variant runs NVE steps with
the C++ engine (``ModelPotential`` / ``UncertainPotential``, 1 Å skin) in this process,
alternating variants in rounds so machine load affects all alike; median step time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import equipot
from equipot.sim import nve
from equipot.sim.potentials import ModelPotential
from equipot.sim.state import SimState
from equipot.sim.uncertain import UncertainPotential
from equipot.uq.store import ForceBall
from equipot.uq.workflow import fit_model, open_dataset

SIZES = {
    "c32-l2": {"channels": 32, "l_max": 2},
    "c64-l3": {"channels": 64, "l_max": 3, "hidden_l_max": 1},
}
SYSTEMS = {
    "water": lambda: molecule("H2O"),
    "ethanol": lambda: molecule("CH3CH2OH"),
    "aspirin": lambda: _aspirin(),
    "Cu256": lambda: bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4),
}


def _aspirin():
    from ase.io import read

    return read(Path(__file__).resolve().parents[1] / "structures" / "aspirin.xyz")


def _fitted(elements, size, seed, frames, tmp: Path):
    model = equipot.build_model(elements, r_max=5.0, seed=seed, **size)
    path = tmp / "fit.extxyz"
    write(path, frames)
    dataset = open_dataset(str(path), model, tmp / f"cache-{seed}")
    fit_model(model, dataset, {}, force_frames=2)
    model.uncertainty = model.uncertainty.replace(
        ball=ForceBall(alpha=0.05, quantile=2.0, score="local", floor=0.01, frames=100)
    )
    return model


def _labelled(atoms, n):
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def _step_time(potential, atoms, steps: int) -> list[float]:
    state = nve.init(SimState.from_atoms(atoms, temperature=300.0, seed=0), potential)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state = nve.step(state, potential, dt=0.5)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="timed steps per variant per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--systems", nargs="+", choices=sorted(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES))
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/uq/cost.json"))
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("EQUIPOT_THREADS", "2")))
    import tempfile

    rows = {"uptime_before": os.popen("uptime").read().strip()}
    for size_name in args.sizes:
        size = SIZES[size_name]
        for name in args.systems:
            atoms = SYSTEMS[name]()
            elements = sorted(set(atoms.get_chemical_symbols()))
            with tempfile.TemporaryDirectory() as tmp:
                frames = _labelled(atoms, 3) if name.startswith("Cu") else [atoms] * 3
                for f in frames:
                    if not name.startswith("Cu"):
                        f.calc = SinglePointCalculator(f, energy=0.0, forces=np.zeros((len(f), 3)))
                members = [_fitted(elements, size, s, frames, Path(tmp)) for s in range(4)]
            variants = {
                "plain": ModelPotential(_without_uq(members[0]), dtype="float64"),
                "single+uq": UncertainPotential(members[0], dtype="float64"),
                "committee-4": UncertainPotential(members, dtype="float64"),
            }
            steps = args.steps if len(atoms) < 100 else max(5, args.steps // 10)
            times = {k: [] for k in variants}
            for potential in variants.values():
                _step_time(potential, atoms, 3)  # warm up (engines, tables)
            for _ in range(args.rounds):
                for key, potential in variants.items():
                    times[key] += _step_time(potential, atoms, steps)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            row = {
                "atoms": len(atoms),
                "ms_per_step": med,
                "uq_overhead": med["single+uq"] / med["plain"] - 1.0,
                "committee_ratio": med["committee-4"] / med["plain"],
            }
            rows[f"{size_name}/{name}"] = row
            print(
                f"{size_name:7s} {name:8s} N={len(atoms):4d}  plain {med['plain']:8.2f} ms  "
                f"+uq {med['single+uq']:8.2f} ms ({100 * row['uq_overhead']:+.1f} %)  "
                f"committee-4 {med['committee-4']:8.2f} ms ({row['committee_ratio']:.2f}×)",
                flush=True,
            )
    rows["uptime_after"] = os.popen("uptime").read().strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(rows["uptime_before"], "|", rows["uptime_after"])


def _without_uq(model):
    import copy

    plain = copy.deepcopy(model)
    plain.uncertainty = None
    return plain


if __name__ == "__main__":
    main()
