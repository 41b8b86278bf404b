"""Issue 9 soak: long MD with the C++ engine — resident memory, file handles, energy drift.

Two systems, each with a small trained model (trained here, once, under ``train``):

* ``molecule``: ethanol (9 atoms), a model trained on rMD17 ethanol (950 frames, 5 min),
  10⁶ NVE steps of 0.5 fs (0.5 ns) from 300 K;
* ``cell``: fcc Cu, 6×6×7 conventional cells (1,008 atoms), a model trained on EMT copper
  (the demo's data, 5 min), 10⁵ NVE steps of 2 fs (0.2 ns) from 300 K.

Each run goes through ``equipot.sim.runner.run`` (the loop behind ``equipot md``) with its
trajectory (every 1,000 steps) and thermo log (every 100 steps) files, in segments of at most
``--segment-steps`` steps, each its own process and lock hold (the state is carried over in
an ``.npz``). A sampler thread reads VmRSS and the number of open file descriptors every 2 s;
memory growth is measured from the end of warm-up (first 5 % of the segment) to its end.

    flock /work/coord/cpu.lock python benchmarks/soak.py train --rmd17 ../shared/data/rmd17
    flock /work/coord/cpu.lock python benchmarks/soak.py run molecule --steps 500000 --segment 0
    flock /work/coord/cpu.lock python benchmarks/soak.py run molecule --steps 500000 --segment 1
    flock /work/coord/cpu.lock python benchmarks/soak.py run cell --steps 50000 --segment 0
    flock /work/coord/cpu.lock python benchmarks/soak.py run cell --steps 50000 --segment 1
    python benchmarks/soak.py report

Writes benchmarks/out/soak/<system>-<segment>.json and soak.md.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "soak"
SYSTEMS = {
    "molecule": {"dt": 0.5, "model": "ethanol.eqp", "steps": 1_000_000},
    "cell": {"dt": 2.0, "model": "cu.eqp", "steps": 100_000},
}
SMALL_MODEL = {"l_max": 2, "channels": 16, "num_layers": 2, "correlation": 2}


def _train(train: dict, name: str, model: dict, loss: dict, minutes: float) -> Path:
    from equipot.train import load_config
    from equipot.train import train as run_training

    config = {
        "seed": 0,
        "dtype": "float64",
        "data": {"train": train, "valid_count": 50},
        "model": {"radial_hidden": [32, 32], **SMALL_MODEL, **model},
        "loss": loss,
        "optim": {
            "lr": 0.01,
            "batch_size": 5,
            "valid_batch_size": 50,
            "max_epochs": 100000,
            "max_time_min": minutes,
            "scheduler": "cosine",
            "min_lr": 1e-5,
            "ema_decay": 0.99,
        },
        "output": {"dir": str(OUT / f"train-{name}"), "progress": False, "plot": False},
    }
    result = run_training(load_config(config))
    target = OUT / SYSTEMS["molecule" if name == "ethanol" else "cell"]["model"]
    target.write_bytes(result.best_model.read_bytes())
    print(f"{name}: {result.results['valid']} → {target}")
    return target


def train_models(rmd17: Path, minutes: float) -> None:
    from equipot.demo.emt_data import write_dataset

    OUT.mkdir(parents=True, exist_ok=True)
    _train(
        {"path": str(rmd17 / "rmd17_ethanol_train_01.npz")},
        "ethanol",
        {"r_max": 5.0},
        {"energy_weight": 1.0, "forces_weight": 100.0},
        minutes,
    )
    cu = write_dataset(OUT / "cu_emt.xyz", 300, seed=0)
    _train(
        {"path": str(cu)},
        "cu",
        {"r_max": 4.5},
        {"energy_weight": 10.0, "forces_weight": 10.0, "stress_weight": 100.0},
        minutes,
    )


def _start_atoms(system: str):
    from ase.build import bulk
    from ase.io import read

    if system == "molecule":
        return read(Path(__file__).resolve().parent / "structures" / "ethanol.xyz")
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat((6, 6, 7))


class Sampler(threading.Thread):
    """VmRSS (MB) and open file descriptors every ``interval`` seconds."""

    def __init__(self, interval: float = 2.0):
        super().__init__(daemon=True)
        self.interval, self.samples, self.stop = interval, [], threading.Event()

    @staticmethod
    def now() -> tuple[float, float, int]:
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        return time.perf_counter(), rss / 1024, len(os.listdir("/proc/self/fd"))

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.samples.append(self.now())


def run_segment(system: str, steps: int, segment: int) -> dict:
    import torch

    from equipot.model.io import load_model
    from equipot.sim.potentials import ModelPotential
    from equipot.sim.runner import run
    from equipot.sim.state import SimState
    from equipot.sim.trajectory import read_thermo

    spec = SYSTEMS[system]
    torch.set_num_threads(2)
    potential = ModelPotential(load_model(OUT / spec["model"]), dtype="float64", skin=1.0)
    atoms = _start_atoms(system)
    state = SimState.from_atoms(atoms, temperature=300.0, seed=segment)
    carried = OUT / f"{system}-state.npz"
    if segment > 0:
        saved = np.load(carried)
        dtype = state.positions.dtype
        state = state.replace(
            positions=torch.as_tensor(saved["positions"], dtype=dtype),
            momenta=torch.as_tensor(saved["momenta"], dtype=dtype),
        )
    prefix = OUT / f"{system}-{segment}"
    sampler = Sampler()
    before = Sampler.now()
    sampler.start()
    started = time.perf_counter()
    result = run(
        state,
        potential,
        ensemble="nve",
        dt=spec["dt"],
        steps=steps,
        trajectory=prefix.with_suffix(".extxyz"),
        thermo=prefix.with_suffix(".csv"),
        write_every=1000,
        log_every=100,
    )
    sampler.stop.set()
    sampler.join()
    after = Sampler.now()
    wall = time.perf_counter() - started
    np.savez(
        carried,
        positions=result.state.positions.detach().numpy(),
        momenta=result.state.momenta.detach().numpy(),
    )
    samples = np.array([*sampler.samples, after])
    warm = samples[samples[:, 0] >= started + 0.05 * wall]
    thermo = read_thermo(prefix.with_suffix(".csv"))
    t_ns = np.asarray(thermo["time_fs"]) * 1e-6
    total = np.asarray(thermo["total_eV"])
    n = len(atoms)
    report = {
        "system": system,
        "atoms": n,
        "segment": segment,
        "steps": steps,
        "dt_fs": spec["dt"],
        "wall_s": wall,
        "steps_per_s": steps / wall,
        "rss_MB_start": before[1],
        "rss_MB_after_warmup": float(warm[0, 1]),
        "rss_MB_end": float(after[1]),
        "rss_MB_max": float(samples[:, 1].max()),
        "rss_growth_after_warmup": float((after[1] - warm[0, 1]) / warm[0, 1]),
        "fds_start": before[2],
        "fds_max": int(samples[:, 2].max()),
        "fds_end": after[2],
        "mean_temperature_K": float(np.mean(thermo["temperature_K"])),
        "energy_drift_meV_per_atom_per_ns": float(np.polyfit(t_ns, total, 1)[0] / n * 1e3),
        "energy_max_deviation_meV_per_atom": float(np.abs(total - total[0]).max() / n * 1e3),
        "neighbour_list_builds": int(potential.neighbors.rebuilds),
        "uptime": os.getloadavg(),
    }
    (prefix.with_suffix(".json")).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return report


def write_report() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*-[0-9].json"))]
    lines = [
        "| system | atoms | segment | steps | Δt (fs) | steps/s | RSS after warm-up → end (MB) "
        "| growth | fds start / max / end | drift (meV/atom/ns) | max ΔE (meV/atom) | T (K) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['atoms']} | {r['segment']} | {r['steps']} | {r['dt_fs']} "
            f"| {r['steps_per_s']:.0f} | {r['rss_MB_after_warmup']:.1f} → {r['rss_MB_end']:.1f} "
            f"| {100 * r['rss_growth_after_warmup']:+.2f} % | {r['fds_start']} / {r['fds_max']} / "
            f"{r['fds_end']} | {r['energy_drift_meV_per_atom_per_ns']:+.3f} "
            f"| {r['energy_max_deviation_meV_per_atom']:.3f} | {r['mean_temperature_K']:.0f} |"
        )
    text = "\n".join(lines)
    (OUT / "soak.md").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the two small models (≈ 2 × minutes)")
    t.add_argument("--rmd17", type=Path, default=Path("../shared/data/rmd17"))
    t.add_argument("--minutes", type=float, default=5.0)
    r = sub.add_parser("run", help="one segment of a soak run")
    r.add_argument("system", choices=sorted(SYSTEMS))
    r.add_argument("--steps", type=int, required=True, help="steps in this segment")
    r.add_argument("--segment", type=int, default=0, help="0: fresh start, k: continue")
    sub.add_parser("report", help="table of all segments (soak.md)")
    args = parser.parse_args()
    if args.command == "train":
        train_models(args.rmd17, args.minutes)
    elif args.command == "run":
        run_segment(args.system, args.steps, args.segment)
    else:
        write_report()


if __name__ == "__main__":
    main()
