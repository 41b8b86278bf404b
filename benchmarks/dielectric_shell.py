"""A crystal's ε∞, ε₀ and Born charges (issue 12): a model trained on shell-model NaCl against
the shell model's own finite-field references.

The reference is the polarisable core–shell NaCl of ``shell_model.py`` (Ewald, adiabatic
shells), exact to the finite differences used: ε∞ from the clamped-ion polarisability, ε₀ from
relaxing the ions in ±ℰ, Born charges Z* = ∂F/∂ℰ. The model learns energy, forces, the cell
dipole μ (positions as given; all atoms kept inside the cell, so μ has no polarisation-quantum
jumps), the clamped-ion polarisability α and Z* (as ∂μ/∂r of its dipole head) from rattled,
strained 8-atom cells, and then gives ε∞ = 1 + α/(ε₀Ω), ε₀ = ε∞ + Zᵀ Φ⁺ Z/(ε₀Ω) and Z* by
autograd (``equipot.properties.dielectric``) at the shell model's equilibrium lattice.

    python benchmarks/dielectric_shell.py data --frames 240      # ≈ 3–6 min on one core
    python benchmarks/dielectric_shell.py train --budget-min 8
    python benchmarks/dielectric_shell.py evaluate                # table + JSON

Writes ``benchmarks/out/dielectric_shell/`` (train.xyz, test.xyz, run/, results.json,
results.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from response_xtb import config  # noqa: E402
from shell_model import ShellModel  # noqa: E402

OUT = HERE / "out" / "dielectric_shell"
FIELD = 1e-3  # V/Å, central differences of the labels


def cell(a: float) -> Atoms:
    """The conventional 8-atom NaCl cell, shifted so that rattled atoms stay inside it."""
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=True)
    atoms.positions += 0.125 * a
    return atoms


def lattice_constant(lo: float = 5.4, hi: float = 6.0, tol: float = 1e-4) -> float:
    """The shell model's equilibrium a (golden-section search on the cell energy)."""
    golden = (np.sqrt(5) - 1) / 2

    def energy(a: float) -> float:
        atoms = cell(a)
        return ShellModel(atoms).evaluate(atoms.positions)["energy"]

    c, d = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fc, fd = energy(c), energy(d)
    while hi - lo > tol:
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - golden * (hi - lo)
            fc = energy(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + golden * (hi - lo)
            fd = energy(d)
    return 0.5 * (lo + hi)


def labelled(atoms: Atoms) -> Atoms:
    """Energy, forces, dipole, clamped-ion α and Z* of the shell model for ``atoms``."""
    shell = ShellModel(atoms)
    r = shell.evaluate(atoms.positions)
    alpha, born = shell.response(atoms.positions, FIELD)
    out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    out.info.update(
        energy=r["energy"], ref_dipole=r["dipole"], ref_polarizability=alpha.reshape(-1)
    )
    out.arrays["forces"] = r["forces"]
    out.arrays["ref_bec"] = born.reshape(len(atoms), 9)
    return out


def cmd_data(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    a0 = lattice_constant()
    rng = np.random.default_rng(args.seed)
    frames = []
    for _ in range(args.frames + args.test_frames):
        strain = rng.normal(0.0, args.strain, (3, 3))
        atoms = cell(a0)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (strain + strain.T)), True)
        atoms.positions += rng.normal(0.0, args.rattle, atoms.positions.shape)
        frames.append(labelled(atoms))
    write(args.out / "train.xyz", frames[: args.frames], format="extxyz")
    write(args.out / "test.xyz", frames[args.frames :], format="extxyz")
    meta = {"a0": a0, "frames": args.frames, "test_frames": args.test_frames}
    meta |= {"rattle_A": args.rattle, "strain": args.strain, "seed": args.seed}
    (args.out / "data.json").write_text(json.dumps(meta, indent=1))
    print(f"a0 = {a0:.4f} Å; {len(frames)} frames in {time.perf_counter() - start:.0f} s")


def cmd_train(args) -> None:
    from equipot.train.config import load_config
    from equipot.train.run import train

    # the response benchmark's recipe (model, loss weights, optimiser), smaller batches
    cfg = config(args.out, args.budget_min, prefix="ref", batch_size=4, valid=0.1)
    result = train(load_config(cfg))
    print(json.dumps(result.results["test"], indent=1))


def _mae(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def held_out(model, frames: list[Atoms]) -> dict:
    """Test-set MAE of energy per atom, forces, dipole, α and Z* (the model's calculator)."""
    from equipot.calculator import EquipotCalculator
    from equipot.physics.fields import POLARIZABILITY_TO_A3

    calc = EquipotCalculator(model, dtype="float64")
    rows = {k: [] for k in ("energy", "forces", "dipole", "polarizability_A3", "bec")}
    for ref in frames:
        atoms = ref.copy()
        calc.calculate(atoms, ["energy", "forces", "dipole", "polarizability"])
        res = calc.results
        # ASE reads the file's energy / forces into a calculator, not info / arrays
        rows["energy"].append(abs(res["energy"] - ref.get_potential_energy()) / len(atoms))
        rows["forces"].append(_mae(res["forces"], ref.get_forces()))
        rows["dipole"].append(_mae(res["dipole"], ref.info["ref_dipole"]))
        alpha = res["polarizability"] - ref.info["ref_polarizability"].reshape(3, 3)
        rows["polarizability_A3"].append(float(np.abs(alpha).mean() * POLARIZABILITY_TO_A3))
        calc.calculate(atoms, ["born_effective_charges"])
        z = calc.results["born_effective_charges"]
        rows["bec"].append(_mae(z, ref.arrays["ref_bec"].reshape(-1, 3, 3)))
    return {k: float(np.mean(v)) for k, v in rows.items()}


def cmd_evaluate(args) -> None:
    import equipot
    from equipot.properties.dielectric import dielectric

    meta = json.loads((args.out / "data.json").read_text())
    atoms = cell(meta["a0"])
    start = time.perf_counter()
    ref = ShellModel(atoms).dielectric()
    ref_s = time.perf_counter() - start
    model = equipot.load_model(args.out / "run" / "best.eqp")
    ours = dielectric(model, atoms)
    test = held_out(model, read(args.out / "test.xyz", ":"))
    na = atoms.numbers == 11
    rows = {
        "epsilon_inf": (ref["epsilon_inf"], ours.epsilon_inf),
        "epsilon_0": (ref["epsilon_0"], ours.epsilon_0),
        "Z*(Na)": (ref["born_charges"][na].mean(0), ours.born_charges[na].mean(0)),
        "Z*(Cl)": (ref["born_charges"][~na].mean(0), ours.born_charges[~na].mean(0)),
    }
    table = {}
    for name, (r, m) in rows.items():
        table[name] = {
            "reference_xx": float(r[0, 0]),
            "model_xx": float(m[0, 0]),
            "relative_error": float(abs(m[0, 0] - r[0, 0]) / abs(r[0, 0])),
            "model_isotropy": float(np.abs(m - np.trace(m) / 3 * np.eye(3)).max()),
            "reference": np.asarray(r).tolist(),
            "model": np.asarray(m).tolist(),
        }
    result = {
        "a0": meta["a0"],
        "table": table,
        "model_gamma_cm": ours.frequencies_cm.tolist(),
        "test_mae": test,
        "reference_seconds": ref_s,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"NaCl (core–shell reference, a0 = {meta['a0']:.4f} Å, 8-atom cell)",
        "",
        "| quantity | shell model (finite field) | model (autograd) | relative error |",
        "|---|---:|---:|---:|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} xx | {row['reference_xx']:.4f} | {row['model_xx']:.4f} | "
            f"{100 * row['relative_error']:.1f} % |"
        )
    lines += [
        "",
        "Test MAE: " + ", ".join(f"{k} {v:.4g}" for k, v in test.items()),
        "(energy eV/atom, forces eV/Å, dipole e·Å, polarisability Å³, Z* e)",
    ]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data")
    data.add_argument("--frames", type=int, default=240)
    data.add_argument("--test-frames", type=int, default=40)
    data.add_argument("--rattle", type=float, default=0.08, help="Å per coordinate")
    data.add_argument("--strain", type=float, default=0.01, help="std of the strain entries")
    data.add_argument("--seed", type=int, default=0)
    train = sub.add_parser("train")
    train.add_argument("--budget-min", type=float, default=8.0)
    sub.add_parser("evaluate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate}[args.command](args)


if __name__ == "__main__":
    main()
