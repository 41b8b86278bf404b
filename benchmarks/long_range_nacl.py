"""Ionic crystal: local vs long-range models trained on the Tosi–Fumi + Ewald NaCl data
(``nacl_reference.py``), side by side with the reference itself.

Every variant trains on the same frames (90 % of ``nacl.xyz``; crystal, Schottky vacancy
pair, (100) slab, melt) with the same architecture (r_max 5 Å) and wall-clock budget. Then:
test-set energy / force / stress MAE per configuration type, and properties against the
reference: elastic constants C11, C12, C44 (stress–strain, relaxed), the (100) surface
energy (relaxed 6-layer slab), the Schottky-pair formation energy (relaxed, 64-atom cell)
and the Γ-point phonons of the relaxed 64-atom crystal (all 189 optical frequencies:
mean absolute deviation and the highest one).

    flock /work/coord/cpu.lock python benchmarks/long_range_nacl.py --budget-min 15

Writes ``benchmarks/out/nacl/results.json`` and ``nacl.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from long_range import read_labelled  # noqa: E402
from nacl_reference import TosiFumiCalculator  # noqa: E402

ARCHITECTURE = {"r_max": 5.0, "l_max": 2, "channels": 32, "num_layers": 2, "correlation": 3}
VARIANTS = {
    "local": {},
    "latent": {"long_range": {"charges": "latent"}},
    "qeq": {"long_range": {"charges": "qeq"}},
}


def train_variant(variant: str, data: Path, out: Path, budget_min: float, seed: int) -> Path:
    from equipot.train import load_config, train

    run = out / variant
    if run.exists():
        shutil.rmtree(run)
    model = dict(ARCHITECTURE, radial_hidden=[32, 32], **VARIANTS[variant])
    config = load_config(
        {
            "seed": seed,
            "dtype": "float64",
            "num_threads": 2,
            "data": {"train": str(data), "valid_fraction": 0.05, "test_fraction": 0.1},
            "model": model,
            "loss": {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 100.0},
            "optim": {
                "lr": 0.01,
                "batch_size": 4,
                "max_epochs": 100000,
                "max_time_min": budget_min,
                "scheduler": "cosine",
            },
            "output": {"dir": str(run), "progress": False, "plot": True},
        }
    )
    return train(config, verbose=True).best_model


def properties(source) -> dict:
    from ase.build import bulk

    from equipot.properties.elastic import elastic_constants
    from equipot.properties.hessians import (
        OMEGA_TO_THZ,
        as_calculator,
        force_constants,
        internal_basis,
        mass_weighted,
        signed_sqrt,
    )
    from equipot.properties.relax import relax
    from equipot.properties.surfaces import surface_energy

    calc = as_calculator(source)
    cubic = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    elastic = elastic_constants(cubic, calc, methods=("stress",), fmax=1e-4)
    c = elastic.C
    relaxed_cell = elastic.reference
    surface = surface_energy(
        relaxed_cell,
        calc,
        (1, 0, 0),
        layers=6,
        vacuum=10.0,
        relax_bulk=False,
        bulk_energy_per_atom=_energy(relaxed_cell, calc) / len(relaxed_cell),
    )
    perfect = relaxed_cell.repeat(2)
    e_perfect = _energy(perfect, calc)
    defect = perfect.copy()
    na, cl = 0, int(np.flatnonzero(defect.numbers == 17)[-1])
    del defect[[na, cl]]
    e_defect = relax(defect, calc, fmax=1e-3).get_potential_energy()
    schottky = e_defect - (len(defect) / len(perfect)) * e_perfect
    phi = force_constants(perfect, source)
    basis = internal_basis(perfect)
    dynamical = basis.T @ mass_weighted(phi, perfect.get_masses()) @ basis
    frequencies = np.sort(signed_sqrt(np.linalg.eigvalsh(dynamical))) * OMEGA_TO_THZ
    return {
        "C11_GPa": float(c[0, 0]),
        "C12_GPa": float(c[0, 1]),
        "C44_GPa": float(c[3, 3]),
        "lattice_A": float(relaxed_cell.cell.lengths()[0]),
        "surface_100_J_m2": float(surface.gamma * 16.021766),
        "schottky_eV": float(schottky),
        "gamma_THz": frequencies.tolist(),
    }


def _energy(atoms, calc) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy()


def test_errors(model_path: Path, run: Path) -> dict:

    import equipot

    data = json.loads((run / "data.json").read_text())
    frames = read_labelled(run.parent.parent / "nacl.xyz")
    test = [frames[k] for k in data["test"]["frames"]]
    calc = equipot.EquipotCalculator(model_path)
    out: dict[str, dict] = {}
    for atoms in test:
        kind = atoms.info["config_type"]
        ref_e, ref_f = atoms.info["energy"], atoms.arrays["forces"]
        atoms = atoms.copy()
        atoms.calc = calc
        row = out.setdefault(kind, {"e": [], "f": []})
        row["e"].append(abs(atoms.get_potential_energy() - ref_e) / len(atoms))
        row["f"].append(np.abs(atoms.get_forces() - ref_f).mean())
    return {
        kind: {
            "energy_meV_atom": 1e3 * float(np.mean(v["e"])),
            "forces_meV_A": 1e3 * float(np.mean(v["f"])),
        }
        for kind, v in out.items()
    }


def markdown(results: dict) -> str:
    ref = results["reference"]["properties"]
    lines = [
        "| | reference | " + " | ".join(k for k in results if k != "reference") + " |",
        "|---|---|" + "---|" * (len(results) - 1),
    ]
    keys = [
        ("C11_GPa", "C11 (GPa)", "{:.1f}"),
        ("C12_GPa", "C12 (GPa)", "{:.1f}"),
        ("C44_GPa", "C44 (GPa)", "{:.1f}"),
        ("lattice_A", "a (Å)", "{:.4f}"),
        ("surface_100_J_m2", "γ(100) (J/m²)", "{:.3f}"),
        ("schottky_eV", "Schottky pair (eV)", "{:.3f}"),
    ]
    for key, label, fmt in keys:
        row = [fmt.format(ref[key])] + [
            fmt.format(r["properties"][key]) for k, r in results.items() if k != "reference"
        ]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    ref_w = np.array(ref["gamma_THz"])
    row = []
    for k, r in results.items():
        if k == "reference":
            continue
        w = np.array(r["properties"]["gamma_THz"])
        row.append(f"{np.abs(w[3:] - ref_w[3:]).mean():.3f} / {w[-1]:.2f}")
    lines.append(
        f"| Γ phonons: MAD / highest (THz) | – / {ref_w[-1]:.2f} | " + " | ".join(row) + " |"
    )
    for kind in ("crystal", "vacancy", "surface", "melt"):
        row = []
        for k, r in results.items():
            if k == "reference":
                continue
            e = r["test"].get(kind)
            row.append(f"{e['energy_meV_atom']:.2f} / {e['forces_meV_A']:.1f}" if e else "–")
        lines.append(f"| test {kind}: E meV/atom / F meV/Å | – | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("benchmarks/out/nacl/nacl.xyz"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/nacl/runs"))
    parser.add_argument("--budget-min", type=float, default=15.0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    path = args.data.parent / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "reference" not in results:
        results["reference"] = {"properties": properties(TosiFumiCalculator())}
        path.write_text(json.dumps(results, indent=1))
    for variant in args.variants:
        model = args.out / variant / "best.eqp"
        if not args.evaluate_only:
            model = train_variant(variant, args.data, args.out, args.budget_min, args.seed)
        results[variant] = {
            "properties": properties(model),
            "test": test_errors(model, args.out / variant),
        }
        path.write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (args.data.parent / "nacl.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
