"""Evaluation of one trained model on the extrapolation tests, with any ASE calculator.

Run as a script for an equipot model (``extrapolation.py`` starts it) and imported by
``peers/mace_extrapolation.py`` inside MACE's own environment, so both codes are measured by
the same lines: predictions on every reference frame, and the model's own relaxed torsion
scan from the reference minimum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase.io import read

MOLECULE_TESTS = ["test_300K", "md_600K", "md_1200K", "torsion", "stretch", "compression"]
COPPER_TESTS = ["test_300K", "liquid", "surfaces", "vacancy"]


def test_files(folder: Path) -> dict[str, list[Path]]:
    if (folder / "torsion.xyz").exists():
        files = {name: [folder / f"{name}.xyz"] for name in MOLECULE_TESTS if name != "stretch"}
        files["stretch"] = sorted(folder.glob("stretch_*.xyz"))
        return files
    return {name: [folder / f"{name}.xyz"] for name in COPPER_TESTS}


def predict_frames(calc, frames) -> dict:
    energies, forces = [], []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        energies.append(float(atoms.get_potential_energy()))
        forces.append(np.asarray(atoms.get_forces()).tolist())
    return {"energy": energies, "forces": forces}


def model_torsion_scan(calc, folder: Path) -> dict:
    """The model's relaxed scan of the reference torsion, from the reference minimum."""
    from equipot.scan import Coordinate, check_scan, run_scan

    meta = json.loads((folder / "meta.json").read_text())
    reference = read(folder / "torsion.xyz", ":")
    values = np.array([f.info["value"] for f in reference])
    start = read(folder / "minimum.xyz")
    coordinate = Coordinate.torsion(start, meta["torsion"])
    scan = run_scan(start, calc, coordinate, values, relax=True, fmax=0.01, steps=500)
    check = check_scan(scan.values, scan.energies, scan.generalized_forces, unit="deg")
    return {
        "values": scan.values.tolist(),
        "energy": scan.energies.tolist(),
        "generalized_force": scan.generalized_forces.tolist(),
        "converged": scan.converged.tolist(),
        "check": check.as_dict(),
    }


def evaluate(calc, folder: Path) -> dict:
    out = {}
    for name, paths in test_files(folder).items():
        frames = [f for p in paths for f in read(p, ":")]
        out[name] = predict_frames(calc, frames)
    if (folder / "torsion.xyz").exists():
        out["torsion_scan"] = model_torsion_scan(calc, folder)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python extrapolation_eval.py MODEL.eqp DATA_DIR OUT.json``: an equipot model."""
    import sys

    import torch

    import equipot

    model, folder, out = (argv or sys.argv[1:])[:3]
    torch.set_num_threads(1)
    result = evaluate(equipot.EquipotCalculator(model), Path(folder))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
