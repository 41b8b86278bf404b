"""Issue 16 benchmark: training seconds per epoch, equipot (fused step and autograd) vs MACE.

Same data, same-size models, same batch size, same thread count, one after the other in one
run. Models as in ``benchmarks/speed.py`` and MACE's rMD17 baseline (``peers/mace_rmd17.sh``):
64 channels, hidden irreps 64×0e + 64×1o (L = 1), spherical harmonics / A-basis to l = 3,
2 layers, correlation 3, r_max 5 Å, 8 Bessel functions, radial MLP [64, 64, 64], readout
MLP 16; batch 5, energy + force loss, AMSGrad, EMA. Systems: rMD17 ethanol and aspirin (the
first ``--frames`` frames of split 01 train, 50 more for validation), and EMT copper: 3×3×3
fcc cells (108 atoms), rattled, labelled with ASE's EMT.

    python benchmarks/train_speed.py                      # all systems, float32 and float64
    python benchmarks/train_speed.py --systems ethanol --dtypes float32 --frames 200

equipot: the trainer's own epoch (``Trainer._train_epoch``: batching, loss, gradients,
clipping, AMSGrad, EMA) is timed after one warm-up epoch; "fused" is the default C++
second-order step, "autograd" the PyTorch reference (``EQUIPOT_KERNELS=0``). MACE 0.3.16 runs
``mace_run_train`` (its own venv) for ``--mace-epochs`` epochs; its seconds per epoch are the
spacing of its per-epoch log lines after the first epoch, which include its validation of the
50 frames; equipot's validation of the same 50 frames is timed separately and added
("with validation"). ``--nequip`` adds NequIP (PyPI ``nequip``, its own venv;
``peers/nequip_peer.py``: the same feature irreps, depth and radial network) timed the same
way. Writes ``benchmarks/out/train_speed.json`` and ``train_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers.nequip_peer import run_nequip  # noqa: E402
from rmd17_mace import KCAL, parse_log  # noqa: E402

RMD17 = HERE.parent.parent / "shared" / "data" / "rmd17"
MODEL = {
    "r_max": 5.0,
    "l_max": 3,
    "hidden_l_max": 1,
    "channels": 64,
    "num_layers": 2,
    "correlation": 3,
    "num_radial": 8,
    "radial_hidden": [64, 64, 64],
    "readout_hidden": 16,
}
MACE_FLAGS = [
    "--model", "MACE", "--hidden_irreps", "64x0e + 64x1o", "--max_L", "1", "--r_max", "5.0",
    "--num_interactions", "2", "--correlation", "3", "--max_ell", "3", "--num_radial_basis", "8",
    "--radial_MLP", "[64, 64, 64]", "--MLP_irreps", "16x0e", "--batch_size", "5",
    "--valid_batch_size", "10", "--loss", "weighted", "--forces_weight", "1000",
    "--energy_weight", "10", "--lr", "0.01", "--amsgrad", "--ema", "--ema_decay", "0.99",
    "--E0s", "average", "--energy_key", "REF_energy", "--forces_key", "REF_forces",
    "--device", "cpu", "--seed", "1", "--error_table", "TotalMAE",
]  # fmt: skip


def write_frames(system: str, frames: int, root: Path) -> dict[str, Path]:
    """extxyz train / valid files (eV, eV/Å; keys REF_energy / REF_forces) for both codes."""
    from ase import Atoms
    from ase.io import write

    root.mkdir(parents=True, exist_ok=True)
    if system == "Cu108":
        atoms_list = _emt_copper(frames + 50)
    else:
        data = np.load(RMD17 / f"rmd17_{system}_train_01.npz")
        atoms_list = []
        for k in range(frames + 50):
            atoms = Atoms(numbers=data["nuclear_charges"], positions=data["coords"][k])
            atoms.info["REF_energy"] = float(data["energies"][k]) * KCAL
            atoms.arrays["REF_forces"] = data["forces"][k] * KCAL
            atoms_list.append(atoms)
    paths = {"train": root / "train.xyz", "valid": root / "valid.xyz"}
    write(paths["train"], atoms_list[:frames], format="extxyz")
    write(paths["valid"], atoms_list[frames:], format="extxyz")
    return paths


def _emt_copper(n: int) -> list:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * rng.uniform(0.98, 1.02), cubic=True).repeat(3)
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info["REF_energy"] = energy
        atoms.arrays["REF_forces"] = forces
        frames.append(atoms)
    return frames


EQUIPOT_CHILD = r"""
import json, os, sys, time
import torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
from equipot.train import load_config
from equipot.train.prepare import prepare
from equipot.train.trainer import Trainer
from equipot.train.evaluate import evaluate_dataset
from equipot.model.second_order import engine_runs
config = load_config(json.loads(sys.argv[1]))
trainer = Trainer(config, prepare(config, verbose=False), verbose=False)
epochs = int(sys.argv[2])
def next_epoch():  # what the trainer's loop does between epochs (here without validation)
    trainer.state.epoch, trainer.state.batch = trainer.state.epoch + 1, 0
trainer._train_epoch(False)  # warm-up (kernels loaded, allocator primed)
next_epoch()
times, steps = [], trainer.state.step
for _ in range(epochs):
    t0 = time.perf_counter()
    trainer._train_epoch(False)
    times.append(time.perf_counter() - t0)
    next_epoch()
per_epoch = len(trainer.epoch_batches(0))
assert trainer.state.step - steps == epochs * per_epoch, "timed epochs did not run every step"
t0 = time.perf_counter()
evaluate_dataset(trainer.averaged_model(), trainer.valid_set, batch_size=10,
                 dtype=trainer.dtype, energy_reference=trainer.reference, loss=trainer.loss)
valid = time.perf_counter() - t0
print(json.dumps({"epoch_s": min(times), "epoch_s_all": times, "valid_s": valid,
                  "fused_steps": engine_runs(trainer.model.net), "frames": len(trainer.train_set)}))
"""


def run_equipot(paths, dtype, threads, epochs, fused, root) -> dict:
    config = {
        "seed": 1,
        "dtype": dtype,
        "num_threads": threads,
        "data": {
            "train": {"path": str(paths["train"]), "energy_key": "REF_energy",
                      "forces_key": "REF_forces"},
            "valid": {"path": str(paths["valid"]), "energy_key": "REF_energy",
                      "forces_key": "REF_forces"},
        },
        "model": MODEL,
        "loss": {"energy_weight": 1.0, "forces_weight": 100.0},
        "optim": {"batch_size": 5, "lr": 0.01, "amsgrad": True, "max_epochs": 100},
        "output": {"dir": str(root / f"equipot_{dtype}_{'fused' if fused else 'autograd'}"),
                   "progress": False, "plot": False},
    }  # fmt: skip
    env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    if not fused:
        env["EQUIPOT_KERNELS"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", EQUIPOT_CHILD, json.dumps(config), str(epochs)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"equipot failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_mace(paths, dtype, threads, epochs, root, mace_bin: Path) -> dict:
    work = root / f"mace_{dtype}"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    cmd = [
        str(mace_bin / "mace_run_train"), *MACE_FLAGS, "--name", "MACE",
        "--default_dtype", dtype, "--max_num_epochs", str(epochs),
        "--train_file", str(paths["train"]), "--valid_file", str(paths["valid"]),
    ]  # fmt: skip
    with open(work / "stdout.log", "w") as log:
        subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    rows = parse_log(work, 1)
    if len(rows) < 2:
        raise RuntimeError(f"MACE logged {len(rows)} epochs; see {work}")
    spacing = np.diff([r["time_s"] for r in rows])
    return {"epoch_s": float(np.min(spacing)), "epoch_s_all": spacing.tolist()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=["ethanol", "aspirin", "Cu108"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--frames", type=int, default=950, help="training frames per epoch")
    p.add_argument("--cu-frames", type=int, default=200, help="training frames, Cu108")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="timed equipot epochs (best kept)")
    p.add_argument("--mace-epochs", type=int, default=3)
    p.add_argument("--mace-bin", type=Path, default=Path("/work/peers/mace/bin"))
    p.add_argument("--skip-autograd", action="store_true")
    p.add_argument("--skip-mace", action="store_true")
    p.add_argument("--nequip", action="store_true", help="NequIP as a second peer")
    p.add_argument("--nequip-epochs", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "out")
    args = p.parse_args()
    args.out = args.out.resolve()  # the peers run in their own working directories
    args.out.mkdir(parents=True, exist_ok=True)
    load = {"uptime_before": os.getloadavg()}
    rows = []
    for system in args.systems:
        frames = args.cu_frames if system == "Cu108" else args.frames
        root = args.out / "train_speed" / system
        paths = write_frames(system, frames, root)
        for dtype in args.dtypes:
            row = {"system": system, "dtype": dtype, "frames": frames}
            fused = run_equipot(paths, dtype, args.threads, args.epochs, True, root)
            assert fused["fused_steps"] > 0, "the fused step did not run"
            row["fused"] = fused
            if not args.skip_autograd:
                row["autograd"] = run_equipot(paths, dtype, args.threads, 1, False, root)
            if not args.skip_mace:
                row["mace"] = run_mace(paths, dtype, args.threads, args.mace_epochs, root,
                                       args.mace_bin)  # fmt: skip
            if args.nequip:
                species = ["Cu"] if system == "Cu108" else ["H", "C", "O"]
                row["nequip"] = run_nequip(paths, dtype, args.threads, args.nequip_epochs, root,
                                           species)  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    load["uptime_after"] = os.getloadavg()
    (args.out / "train_speed.json").write_text(json.dumps({"load": load, "rows": rows}, indent=1))
    table = markdown(rows, args.threads, load)
    (args.out / "train_speed.md").write_text(table + "\n")
    print(table)


def markdown(rows: list[dict], threads: int, load: dict) -> str:
    lines = [
        f"Training s/epoch, {threads} threads, batch 5, same-size models (64 channels, L = 1, "
        f"l = 3, 2 layers; equipot and MACE ν = 3, NequIP has no many-body product). Load "
        f"average before / after: {load['uptime_before'][0]:.2f} / "
        f"{load['uptime_after'][0]:.2f}. Peers' s/epoch include their validation.",
        "",
        "| system | dtype | frames | equipot fused (s/epoch) | + validation | frames/s "
        "| equipot autograd | MACE (s/epoch) | MACE / equipot | NequIP (s/epoch) "
        "| NequIP / equipot |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        f = r["fused"]
        with_valid = f["epoch_s"] + f["valid_s"]
        auto = f"{r['autograd']['epoch_s']:.2f}" if "autograd" in r else "–"
        peers = []
        for name in ("mace", "nequip"):
            if name in r:
                peers += [f"{r[name]['epoch_s']:.2f}", f"{r[name]['epoch_s'] / with_valid:.1f}×"]
            else:
                peers += ["–", "–"]
        lines.append(
            f"| {r['system']} | {r['dtype']} | {r['frames']} | {f['epoch_s']:.2f} | "
            f"{with_valid:.2f} | {r['frames'] / f['epoch_s']:.0f} | {auto} | "
            + " | ".join(peers)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
