"""Issue 9 soak: long MD with the C++ engine — resident memory, file handles, energy drift.

Two systems, each with a small model trained here once (``train``, ``--minutes`` each):

* ``molecule``: ethanol (9 atoms), trained on rMD17 ethanol (energies + forces), NVE steps of
  0.5 fs from 300 K; the issue asks for 10⁶ steps;
* ``cell``: fcc Cu, 6×6×7 conventional cells (1,008 atoms), trained on EMT copper (the demo's
  data), NVE steps of 2 fs from 300 K; the issue asks for 10⁵ steps.

Models (see MODELS): l_max 1, 8 channels, correlation 2, radial MLP [16, 16]; two layers and
r_max 4 Å for ethanol, one layer and r_max 4 Å (first and second neighbour shells) for Cu —
small, so that the loop (not the network) dominates and many steps fit in a lock hold.

Each run goes through ``equipot.sim.runner.run`` (the loop behind ``equipot md``, C++
inference engine) with its trajectory (every 1,000 steps) and thermo log (every 100 steps).
``--steps`` is the target; ``--minutes`` caps the wall time: the step rate is measured on 200
steps first and the run takes min(target, what fits) steps — the JSON says both. A run can be
split into segments (``--segment k`` continues from segment k−1's positions and momenta), each
its own process and lock hold. A sampler thread reads VmRSS and the number of open file
descriptors every 2 s; memory growth is measured from the end of warm-up (first 5 % of the
segment's wall time) to its end.

    /work/coord/cpuslot python benchmarks/soak.py train --rmd17 ../shared/data/rmd17
    /work/coord/cpuslot python benchmarks/soak.py run molecule --steps 1000000 --minutes 18
    /work/coord/cpuslot python benchmarks/soak.py run cell --steps 100000 --minutes 18
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
    "molecule": {"dt": 0.5, "model": "ethanol.eqp"},
    "cell": {"dt": 2.0, "model": "cu.eqp"},
}
SMALL = {"l_max": 1, "channels": 8, "correlation": 2, "radial_hidden": [16, 16]}
MODELS = {
    "ethanol": {**SMALL, "num_layers": 2, "r_max": 4.0},
    "cu": {**SMALL, "num_layers": 1, "r_max": 4.0},
}


def _train(train: dict, name: str, model: dict, loss: dict, minutes: float) -> Path:
    from equipot.train import load_config
    from equipot.train import train as run_training

    config = {
        "seed": 0,
        "dtype": "float64",
        "data": {"train": train, "valid_count": 50},
        "model": model,
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
        "uncertainty": {"fit": False},
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
        MODELS["ethanol"],
        {"energy_weight": 1.0, "forces_weight": 100.0},
        minutes,
    )
    cu = write_dataset(OUT / "cu_emt.xyz", 300, seed=0)
    _train(
        {"path": str(cu)},
        "cu",
        MODELS["cu"],
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
    """Resident memory and open file descriptors every ``interval`` seconds.

    Each sample is (time, VmRSS MB, RssAnon MB, open fds). RssAnon (heap, anonymous mmaps) is
    the leak indicator; VmRSS also counts file-backed pages (shared libraries), which the
    kernel may evict and fault in again, so it can fall without anything being freed.
    """

    def __init__(self, interval: float = 2.0):
        super().__init__(daemon=True)
        self.interval, self.samples, self.stop = interval, [], threading.Event()

    @staticmethod
    def now() -> tuple[float, float, float, int]:
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    fields[key] = int(value.split()[0]) / 1024
        fds = len(os.listdir("/proc/self/fd"))
        return time.perf_counter(), fields["VmRSS"], fields["RssAnon"], fds

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.samples.append(self.now())


def _memory_plot(samples: np.ndarray, started: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = (samples[:, 0] - started) / 60.0
    fig, (mem, fds) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    mem.plot(minutes, samples[:, 1], label="VmRSS")
    mem.plot(minutes, samples[:, 2], label="RssAnon")
    mem.set_ylabel("MB")
    mem.legend()
    mem.set_title(title)
    fds.plot(minutes, samples[:, 3], drawstyle="steps-post")
    fds.set_ylabel("open fds")
    fds.set_xlabel("wall time (min)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_segment(system: str, target: int, segment: int, minutes: float) -> dict:
    import torch

    from equipot.model.io import load_model
    from equipot.sim.potentials import ModelPotential
    from equipot.sim.runner import run
    from equipot.sim.state import SimState
    from equipot.sim.trajectory import read_thermo

    spec = SYSTEMS[system]
    torch.set_num_threads(1)  # one CPU slot
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
    from equipot.kernels import cpu_kernels

    engine = cpu_kernels() is not None
    probe = run(state, potential, ensemble="nve", dt=spec["dt"], steps=20, progress=False)
    t0 = time.perf_counter()
    run(probe.state, potential, ensemble="nve", dt=spec["dt"], steps=200, progress=False)
    per_step = (time.perf_counter() - t0) / 200
    fits = int(0.95 * 60.0 * minutes / per_step)
    steps = max(min(target, fits), 1000)
    print(f"{system}: {1e3 * per_step:.3f} ms/step → {steps} of {target} steps", flush=True)
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
    np.savetxt(
        prefix.parent / f"{prefix.name}-memory.csv",
        np.column_stack([samples[:, 0] - started, samples[:, 1:]]),
        delimiter=",",
        header="wall_s,vm_rss_MB,rss_anon_MB,open_fds",
        comments="",
    )
    _memory_plot(samples, started, prefix.parent / f"{prefix.name}-memory.png", system)
    thermo = read_thermo(prefix.with_suffix(".csv"))
    t_ns = np.asarray(thermo["time_fs"]) * 1e-6
    total = np.asarray(thermo["total_eV"])
    n = len(atoms)
    report = {
        "system": system,
        "atoms": n,
        "segment": segment,
        "steps": steps,
        "target_steps": target,
        "cpp_engine": engine,
        "torch_threads": torch.get_num_threads(),
        "dt_fs": spec["dt"],
        "wall_s": wall,
        "steps_per_s": steps / wall,
        "rss_MB_start": before[1],
        "rss_MB_after_warmup": float(warm[0, 1]),
        "rss_MB_end": float(after[1]),
        "rss_MB_max": float(samples[:, 1].max()),
        "rss_growth_after_warmup": float((after[1] - warm[0, 1]) / warm[0, 1]),
        "rss_anon_MB_after_warmup": float(warm[0, 2]),
        "rss_anon_MB_end": float(after[2]),
        "rss_anon_MB_max": float(samples[:, 2].max()),
        "rss_anon_growth_after_warmup": float((after[2] - warm[0, 2]) / warm[0, 2]),
        "rss_anon_max_growth_after_warmup": float((warm[:, 2].max() - warm[0, 2]) / warm[0, 2]),
        "fds_start": before[3],
        "fds_max": int(samples[:, 3].max()),
        "fds_end": after[3],
        "mean_temperature_K": float(np.mean(thermo["temperature_K"])),
        "energy_drift_meV_per_atom_per_ns": float(np.polyfit(t_ns, total, 1)[0] / n * 1e3),
        "energy_max_deviation_meV_per_atom": float(np.abs(total - total[0]).max() / n * 1e3),
        "neighbour_list_builds": int(potential.neighbors.rebuilds),
        "load_average": os.getloadavg(),
    }
    (prefix.with_suffix(".json")).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return report


def peak_growth(memory_csv: Path, window_s: float = 60.0) -> tuple[float, float, float] | None:
    """RssAnon peaks of the first and the last minute after warm-up (first 5 % of the wall
    time) and their relative change: the upper envelope, which a sampled sawtooth (the heap
    refilled between two releases, runtime.py) does not move, while a leak raises it."""
    data = np.loadtxt(memory_csv, delimiter=",", skiprows=1, ndmin=2)
    if data.shape[1] < 3 or len(data) < 4:
        return None
    t, anon = data[:, 0], data[:, 2]
    after = t >= 0.05 * t[-1]
    t, anon = t[after], anon[after]
    first, last = anon[t <= t[0] + window_s].max(), anon[t >= t[-1] - window_s].max()
    return float(first), float(last), float((last - first) / first)


def write_report() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*-[0-9].json"))]
    lines = [
        "| system | atoms | segment | steps run (target) | Δt (fs) | steps/s "
        "| VmRSS after warm-up → end (MB) | growth | RssAnon after warm-up → end (max) (MB) "
        "| growth (max) | RssAnon 1-min peak, first → last (MB) | peak growth "
        "| fds start / max / end | drift (meV/atom/ns) | max ΔE (meV/atom) | T (K) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        csv = OUT / f"{r['system']}-{r['segment']}-memory.csv"
        peaks = peak_growth(csv) if csv.exists() and "rss_anon_MB_end" in r else None
        peak = f"{peaks[0]:.1f} → {peaks[1]:.1f} | {100 * peaks[2]:+.2f} %" if peaks else "— | —"
        if "rss_anon_MB_end" in r:
            anon = (
                f"{r['rss_anon_MB_after_warmup']:.1f} → {r['rss_anon_MB_end']:.1f} "
                f"({r['rss_anon_MB_max']:.1f}) | {100 * r['rss_anon_growth_after_warmup']:+.2f} % "
                f"({100 * r['rss_anon_max_growth_after_warmup']:+.2f} %)"
            )
        else:  # written before RssAnon was sampled
            anon = "— | —"
        lines.append(
            f"| {r['system']} | {r['atoms']} | {r['segment']} | {r['steps']} "
            f"({r.get('target_steps', r['steps'])}) | {r['dt_fs']} "
            f"| {r['steps_per_s']:.0f} | {r['rss_MB_after_warmup']:.1f} → {r['rss_MB_end']:.1f} "
            f"| {100 * r['rss_growth_after_warmup']:+.2f} % | {anon} | {peak} "
            f"| {r['fds_start']} / {r['fds_max']} / {r['fds_end']} "
            f"| {r['energy_drift_meV_per_atom_per_ns']:+.3f} "
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
    t.add_argument("--minutes", type=float, default=2.0)
    r = sub.add_parser("run", help="one segment of a soak run")
    r.add_argument("system", choices=sorted(SYSTEMS))
    r.add_argument("--steps", type=int, required=True, help="target steps of this segment")
    r.add_argument("--minutes", type=float, default=18.0, help="wall-time cap of the segment")
    r.add_argument("--segment", type=int, default=0, help="0: fresh start, k: continue")
    sub.add_parser("report", help="table of all segments (soak.md)")
    args = parser.parse_args()
    if args.command == "train":
        train_models(args.rmd17, args.minutes)
    elif args.command == "run":
        run_segment(args.system, args.steps, args.segment, args.minutes)
    else:
        write_report()


if __name__ == "__main__":
    main()
