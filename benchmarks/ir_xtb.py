"""Harmonic IR of single molecules against GFN2-xTB: one model per molecule (spectroscopy recipe).

    python benchmarks/ir_xtb.py data     --molecules H2O H2CO HCOOH CH3OH
    python benchmarks/ir_xtb.py train    --molecules H2O H2CO --budget-min 8
    python benchmarks/ir_xtb.py evaluate --molecules H2O H2CO HCOOH CH3OH

``response_xtb.py`` trains one model on 22 molecules at 300–900 K and checks its transferable
dipoles and Born charges; its harmonic frequencies are 17–43 cm⁻¹ off on average, because the
force field is far from converged there. A spectroscopist who wants one molecule's IR trains a
potential for that molecule on samples around its minimum. This driver does exactly that: for
each molecule, classical normal-mode samples of the xTB minimum at 100 / 300 / 500 K (the
room-temperature region and some anharmonicity on both sides), each labelled by GFN2-xTB (energy,
forces, dipole; Born charges by field finite differences as in ``response_xtb.py``, for the
test only), plus held-out samples for a test error; the response recipe of ``response_xtb.py``
trained on energy, forces and dipole alone (``ir_config``); then the model is relaxed to its
own minimum and its harmonic IR (autograd Hessian, Born charges from the dipole head) is
compared with xTB's finite-difference Hessian and ∂μ/∂Q at xTB's minimum, modes matched by
overlap.

Output per molecule under ``--out/<name>/``; the table is ``--out/ir.json`` and the plot
``--out/ir_vs_xtb.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from ase.collections import g2
from ase.io import read, write

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from response_xtb import (  # noqa: E402
    XTB,
    config,
    ir_comparison,
    labelled,
    modes_of,
    plot_ir,
    relax_xtb,
    sample,
    xtb_hessian,
)

TEMPERATURES = (100.0, 300.0, 500.0)


def cmd_data(args) -> None:
    from tblite.exceptions import TBLiteRuntimeError

    xtb = XTB()
    for name in args.molecules:
        start, rng, redrawn = time.perf_counter(), np.random.default_rng(args.seed), 0
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        minimum = relax_xtb(g2[name], xtb)
        hessian = xtb_hessian(minimum, xtb)
        np.save(out / f"hessian_{name}.npy", hessian)
        minima = {
            name: {"positions": minimum.positions.tolist(), "numbers": minimum.numbers.tolist()}
        }
        (out / "minima.json").write_text(json.dumps(minima))
        modes = modes_of(minimum, hessian)
        frames = []
        while len(frames) < args.frames + args.test_frames:
            temperature = TEMPERATURES[len(frames) % len(TEMPERATURES)]
            try:
                frames.append(labelled(sample(minimum, modes, temperature, rng), xtb, name))
            except TBLiteRuntimeError:  # SCC not converged in a field: redraw, and count it
                redrawn += 1
                if redrawn > len(frames) + 10:
                    raise RuntimeError(f"{name}: xTB fails on most samples") from None
        write(out / "train.xyz", frames[: args.frames], format="extxyz")
        write(out / "test.xyz", frames[args.frames :], format="extxyz")
        info = {"frames": args.frames, "test_frames": args.test_frames, "redrawn": redrawn,
                "temperatures_K": TEMPERATURES, "seconds": time.perf_counter() - start}  # fmt: skip
        (out / "data.json").write_text(json.dumps(info))
        print(f"{name}: {json.dumps(info)}", flush=True)


def ir_config(out: Path, budget_min: float, batch_size: int) -> dict:
    """The response recipe trained on energy, forces and dipole only: what any single-point
    code gives (Born charges need a field or DFPT); IR intensities come from ∂μ/∂r of the
    dipole head. Without the Born-charge and polarisability losses a step costs ≈ ½ (H2O,
    batch 4: 19.7 vs 36.8 ms), so the same budget runs twice the epochs."""
    cfg = config(out, budget_min, batch_size=batch_size, valid=0.1)
    labels = {"dipole": {"key": "xtb_dipole"}}
    cfg["data"]["train"]["labels"] = cfg["data"]["test"]["labels"] = labels
    cfg["model"]["heads"] = {"dipole": {}}
    cfg["loss"]["label_weights"] = {"dipole": 300.0}
    cfg["output"]["progress"] = False
    return cfg


def cmd_train(args) -> None:
    from equipot.train.config import load_config
    from equipot.train.run import train

    for name in args.molecules:
        out = args.out / name
        cfg = ir_config(out, args.budget_min, args.batch_size)
        start = time.perf_counter()
        result = train(load_config(cfg))
        summary = {"seconds": time.perf_counter() - start, **result.results}
        (out / "train.json").write_text(json.dumps(summary, indent=1, default=str))
        print(f"{name}: {json.dumps(summary, default=str)}", flush=True)


def _test_errors(model, frames) -> dict:
    """Test MAE of energy, forces, dipole and of the Born charges, which were not trained on
    (xTB's by field finite differences; the model's are ∂μ/∂r of its dipole head)."""
    from equipot import EquipotCalculator
    from equipot.properties.spectra import born_charges

    calc = EquipotCalculator(model)
    de, df, dmu, dz = [], [], [], []
    for atoms in frames:
        calc.calculate(atoms, ["energy", "forces", "dipole"])
        de.append(abs(calc.results["energy"] - atoms.get_potential_energy()) / len(atoms))
        df.append(np.abs(calc.results["forces"] - atoms.get_forces()).ravel())
        dmu.append(np.abs(calc.results["dipole"] - atoms.info["xtb_dipole"]))
        z_ref = atoms.arrays["xtb_bec"].reshape(-1, 3, 3)
        dz.append(np.abs(born_charges(model, atoms) - z_ref).ravel())
    return {"energy_mae_mev_atom": 1e3 * float(np.mean(de)),
            "forces_mae_mev_A": 1e3 * float(np.mean(np.concatenate(df))),
            "dipole_mae_eA": float(np.mean(np.concatenate(dmu))),
            "bec_mae_e": float(np.mean(np.concatenate(dz)))}  # fmt: skip


def cmd_evaluate(args) -> None:
    from equipot.model.io import load_model

    xtb, rows = XTB(), []
    for name in args.molecules:
        out = args.out / name
        model = load_model(out / "run" / "best.eqp")
        row = ir_comparison(model, name, out, xtb)
        row["test"] = _test_errors(model, read(out / "test.xyz", ":"))
        rows.append(row)
        print(
            f"{name}: {row['within_10_cm']}/{row['modes']} modes within 10 cm⁻¹, |Δν| mean "
            f"{row['frequency_mae_cm']:.2f} max {row['frequency_max_error_cm']:.2f} cm⁻¹, "
            f"relative-intensity MAE {row['relative_intensity_mae']:.4f}, test "
            f"E {row['test']['energy_mae_mev_atom']:.3f} meV/atom "
            f"F {row['test']['forces_mae_mev_A']:.2f} meV/Å "
            f"dipole {row['test']['dipole_mae_eA']:.5f} e·Å Z* {row['test']['bec_mae_e']:.4f} e",
            flush=True,
        )
    plot_ir(args.out / "ir_vs_xtb.png", rows)
    (args.out / "ir.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["data", "train", "evaluate"])
    parser.add_argument("--out", type=Path, default=HERE / "out" / "ir_xtb")
    parser.add_argument("--molecules", nargs="+", default=["H2O", "H2CO", "HCOOH", "CH3OH"])
    parser.add_argument("--frames", type=int, default=1000, help="training frames per molecule")
    parser.add_argument("--test-frames", type=int, default=100)
    parser.add_argument("--budget-min", type=float, default=8.0, help="training minutes each")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate}[args.command](args)


if __name__ == "__main__":
    main()
