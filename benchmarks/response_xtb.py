"""Dipoles, Born charges, polarisabilities and IR spectra against GFN2-xTB (tblite).

    python benchmarks/response_xtb.py data  --out benchmarks/out/response   # labels (xTB)
    python benchmarks/response_xtb.py train --out benchmarks/out/response --budget-min 20
    python benchmarks/response_xtb.py evaluate --out benchmarks/out/response
    python benchmarks/response_xtb.py md --out benchmarks/out/response --molecule H2O

References, all GFN2-xTB through tblite's Python interface (``pip install -e .[xtb]``):
energies, forces and dipoles at displaced geometries (normal-mode sampling of each molecule's
xTB minimum at 300–900 K); Born charges Z*_i[a, b] = ∂F_ib/∂ℰ_a and polarisabilities
α_ab = ∂μ_a/∂ℰ_b by central finite differences in a uniform field (±1e-3 a.u.); xTB's own
harmonic IR: its finite-difference Hessian and the finite-difference derivative of its
dipole along each normal mode. Training molecules and held-out molecules are disjoint.
Everything written lands in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.collections import g2
from ase.io import read, write

TRAIN = [
    "H2O", "NH3", "CH4", "CH3OH", "H2CO", "HCOOH", "CH3CHO", "HCN", "CO2", "C2H4", "C2H2",
    "C2H6", "H3CNH2", "CH3CN", "CH3OCH3", "CH3CH2OH", "N2H4", "CH2OCH2", "CH3COOH", "H2O2",
    "CH3COCH3", "C2H6NH",
]  # fmt: skip
HELD_OUT = ["CH3CONH2", "HCOOCH3", "CH3CH2NH2", "CH3NO2", "H2CCHCN"]
IR = ["H2O", "H2CO", "HCOOH", "CH3OH"]

FIELD = 1e-3  # a.u. (0.0514 V/Å)
AU_FIELD = units.Hartree / units.Bohr  # V/Å per a.u. of field
AU_POLARIZABILITY = units.Bohr**2 / units.Hartree  # e·Å²/V per a.u.


class XTB:
    """GFN2-xTB single points (tblite), optionally in a uniform field (a.u.)."""

    def __init__(self):
        from tblite import library
        from tblite.interface import Calculator

        self._calculator, self._ffi, self.calls = Calculator, library.ffi, 0

    def __call__(self, atoms: Atoms, field=None) -> dict:
        calc = self._calculator("GFN2-xTB", atoms.numbers, atoms.positions / units.Bohr)
        calc.set("verbosity", 0)
        calc.set("accuracy", 0.1)  # tighter SCC convergence for finite differences
        if field is not None:
            vector = np.ascontiguousarray(field, dtype=np.float64)
            calc.add("electric-field", self._ffi.cast("double*", vector.ctypes.data))
        # a sample whose SCC does not converge raises TBLiteRuntimeError; cmd_data redraws it
        # (a retry with 1,000 damped Broyden cycles ran for minutes on one call here)
        result = calc.singlepoint()
        self.calls += 1
        return {
            "energy": result.get("energy") * units.Hartree,
            "forces": -result.get("gradient") * units.Hartree / units.Bohr,
            "dipole": result.get("dipole") * units.Bohr,
        }

    def response(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """(α (3, 3) e·Å²/V, Z* (N, 3, 3) e) by central differences in the field."""
        alpha, born = np.zeros((3, 3)), np.zeros((len(atoms), 3, 3))
        for a in range(3):
            step = np.zeros(3)
            step[a] = FIELD
            plus, minus = self(atoms, step), self(atoms, -step)
            alpha[:, a] = (plus["dipole"] - minus["dipole"]) / (2 * FIELD * AU_FIELD)
            born[:, a, :] = (plus["forces"] - minus["forces"]) / (2 * FIELD * AU_FIELD)
        return 0.5 * (alpha + alpha.T), born


def relax_xtb(atoms: Atoms, xtb: XTB, fmax: float = 1e-4) -> Atoms:
    from ase.calculators.calculator import Calculator, all_changes
    from ase.calculators.singlepoint import SinglePointCalculator  # noqa: F401
    from ase.optimize import BFGS

    class _Adapter(Calculator):
        implemented_properties = ("energy", "forces")

        def calculate(self, atoms=None, properties=("energy",), changes=all_changes):
            super().calculate(atoms, properties, changes)
            r = xtb(self.atoms)
            self.results = {"energy": r["energy"], "forces": r["forces"]}

    atoms = atoms.copy()
    atoms.calc = _Adapter()
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=500)
    atoms.calc = None
    return atoms


def xtb_hessian(atoms: Atoms, xtb: XTB, delta: float = 2e-3) -> np.ndarray:
    n3 = 3 * len(atoms)
    hessian = np.zeros((n3, n3))
    for k in range(n3):
        rows = []
        for s in (1, -1):
            moved = atoms.copy()
            moved.positions[k // 3, k % 3] += s * delta
            rows.append(xtb(moved)["forces"].reshape(-1))
        hessian[k] = -(rows[0] - rows[1]) / (2 * delta)
    return 0.5 * (hessian + hessian.T)


def modes_of(atoms: Atoms, hessian: np.ndarray):
    from equipot.properties.vibrations import modes_from_force_constants

    return modes_from_force_constants(atoms, hessian)


def sample(atoms: Atoms, modes, temperature: float, rng) -> Atoms:
    """Classical normal-mode sample: Q_m ~ N(0, k_B T / ω_m²) in mass-weighted coordinates."""
    from equipot.properties.spectra import mass_weighted_modes

    e = mass_weighted_modes(modes)
    lam = np.maximum(modes.eigenvalues, 1e-3)
    q = rng.normal(size=len(lam)) * np.sqrt(units.kB * temperature / lam)
    displacement = (q @ e) / np.sqrt(np.repeat(atoms.get_masses(), 3))
    out = atoms.copy()
    out.positions += displacement.reshape(-1, 3)
    return out


def labelled(atoms: Atoms, xtb: XTB, name: str) -> Atoms:
    from ase.calculators.singlepoint import SinglePointCalculator

    r = xtb(atoms)
    alpha, born = xtb.response(atoms)
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=r["energy"], forces=r["forces"])
    out.info.update(molecule=name, xtb_dipole=r["dipole"], xtb_polarizability=alpha.reshape(-1))
    out.arrays["xtb_bec"] = born.reshape(len(atoms), 9)
    return out


def cmd_data(args) -> None:
    from tblite.exceptions import TBLiteRuntimeError

    xtb, rng, failed = XTB(), np.random.default_rng(0), {}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    minima = {}
    for split, names, count in (("train", TRAIN, args.per_molecule), ("test", HELD_OUT, 30)):
        frames = []
        for name in names:
            minimum = relax_xtb(g2[name], xtb)
            hessian = xtb_hessian(minimum, xtb)
            minima[name] = {
                "positions": minimum.positions.tolist(),
                "numbers": minimum.numbers.tolist(),
            }
            np.save(out / f"hessian_{name}.npy", hessian)
            modes = modes_of(minimum, hessian)
            k = 0
            while k < count:  # a sample whose SCC fails either way is redrawn, and counted
                temperature = (300.0, 600.0, 900.0)[k % 3]
                try:
                    frames.append(labelled(sample(minimum, modes, temperature, rng), xtb, name))
                except TBLiteRuntimeError as exc:
                    failed[name] = failed.get(name, 0) + 1
                    if failed[name] > 3 * count:
                        raise RuntimeError(f"{name}: xTB fails on most samples ({exc})") from None
                    continue
                k += 1
            print(
                f"{split} {name}: {count} frames, {xtb.calls} xTB calls "
                f"({failed.get(name, 0)} samples redrawn: SCC not converged), "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
        write(out / f"{split}.xyz", frames, format="extxyz")
    (out / "minima.json").write_text(json.dumps(minima))
    (out / "data.json").write_text(
        json.dumps({"xtb_calls": xtb.calls, "redrawn_scc_not_converged": failed})
    )


def config(
    out: Path, budget: float, *, prefix: str = "xtb", batch_size: int = 8, valid: float = 0.05
) -> dict:
    """The response model's training config (also ``dielectric_shell.py``'s): labels under
    ``<prefix>_dipole`` / ``_polarizability`` / ``_bec`` in out/train.xyz and out/test.xyz."""
    labels = {
        "dipole": {"key": f"{prefix}_dipole"},
        "polarizability": {"key": f"{prefix}_polarizability"},
        "bec": {"key": f"{prefix}_bec"},
    }
    return {
        "seed": 0,
        "dtype": "float64",
        "data": {
            "train": {"path": str(out / "train.xyz"), "labels": labels},
            "valid_fraction": valid,
            "test": {"path": str(out / "test.xyz"), "labels": labels},
        },
        "model": {
            "r_max": 5.0,
            "l_max": 2,
            "channels": 32,
            "num_layers": 2,
            "correlation": 3,
            "radial_hidden": [32, 32],
            "heads": {"dipole": {}, "polarizability": {}},
        },
        "loss": {
            "energy_weight": 1.0,
            "forces_weight": 100.0,
            "label_weights": {"dipole": 300.0, "polarizability": 3000.0, "bec": 100.0},
        },
        "optim": {
            "lr": 0.01,
            "batch_size": batch_size,
            "max_epochs": 100000,
            "max_time_min": budget,
            "scheduler": "cosine",
        },
        "output": {"dir": str(out / "run"), "progress": False, "plot": True},
    }


def cmd_train(args) -> None:
    from equipot.train.config import load_config
    from equipot.train.run import train

    result = train(load_config(config(args.out, args.budget_min)))
    print(json.dumps(result.results, indent=1))


def _mae(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def held_out_errors(model, frames) -> dict:
    from equipot.physics.fields import POLARIZABILITY_TO_A3
    from equipot.properties.spectra import born_charges

    calc_errors = {"dipole": [], "bec": [], "polarizability_A3": [], "bec_scale": []}
    from equipot import EquipotCalculator

    for atoms in frames:
        calc = EquipotCalculator(model)
        calc.calculate(atoms, ["dipole", "polarizability"])
        calc_errors["dipole"].append(np.abs(calc.results["dipole"] - atoms.info["xtb_dipole"]))
        alpha = calc.results["polarizability"] - atoms.info["xtb_polarizability"].reshape(3, 3)
        calc_errors["polarizability_A3"].append(np.abs(alpha) * POLARIZABILITY_TO_A3)
        z = born_charges(model, atoms)
        reference = atoms.arrays["xtb_bec"].reshape(-1, 3, 3)
        calc_errors["bec"].append(np.abs(z - reference).ravel())
        calc_errors["bec_scale"].append(np.abs(reference).ravel())
    return {
        k: float(np.mean(np.concatenate([np.ravel(v) for v in vs])))
        for k, vs in calc_errors.items()
    }


def match_modes(e_model: np.ndarray, e_ref: np.ndarray) -> np.ndarray:
    """Index of the reference mode matched to each model mode (max |overlap|, one to one)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.abs(e_model @ e_ref.T))
    return cols[np.argsort(rows)]


def ir_comparison(model, name: str, out: Path, xtb: XTB) -> dict:
    from equipot.properties.relax import relax
    from equipot.properties.spectra import KM_PER_MOL, harmonic_spectrum, mass_weighted_modes

    minima = json.loads((out / "minima.json").read_text())
    ref_atoms = Atoms(numbers=minima[name]["numbers"], positions=minima[name]["positions"])
    ref_modes = modes_of(ref_atoms, np.load(out / f"hessian_{name}.npy"))
    e_ref = mass_weighted_modes(ref_modes)
    inv_sqrt = 1 / np.sqrt(np.repeat(ref_atoms.get_masses(), 3))
    ref_int = []
    for e in e_ref:  # xTB's IR: d μ / dQ by central differences along each mode
        step = 0.01 * (e * inv_sqrt).reshape(-1, 3)  # ΔQ = 0.01 amu^½ Å
        mu = [
            xtb(Atoms(ref_atoms.numbers, ref_atoms.positions + s * step))["dipole"] for s in (1, -1)
        ]
        ref_int.append(KM_PER_MOL * np.sum(((mu[0] - mu[1]) / 0.02) ** 2))
    ref_int = np.array(ref_int)
    atoms = relax(ref_atoms, model, fmax=1e-5)
    spectrum = harmonic_spectrum(model, atoms, raman=False)
    order = match_modes(mass_weighted_modes(spectrum.modes), e_ref)
    nu_ref = ref_modes.frequencies_cm[order]
    int_ref = ref_int[order]
    rel_model = spectrum.ir_intensities / spectrum.ir_intensities.max()
    rel_ref = int_ref / int_ref.max()
    return {
        "molecule": name,
        "frequencies_model_cm": spectrum.frequencies_cm.tolist(),
        "frequencies_xtb_cm": nu_ref.tolist(),
        "intensities_model_km_mol": spectrum.ir_intensities.tolist(),
        "intensities_xtb_km_mol": int_ref.tolist(),
        "frequency_mae_cm": _mae(spectrum.frequencies_cm, nu_ref),
        "frequency_max_error_cm": float(np.max(np.abs(spectrum.frequencies_cm - nu_ref))),
        "within_10_cm": int(np.sum(np.abs(spectrum.frequencies_cm - nu_ref) <= 10.0)),
        "modes": len(nu_ref),
        "relative_intensity_mae": _mae(rel_model, rel_ref),
    }


def plot_ir(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equipot.properties.spectra import broaden

    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 2.2 * len(rows)), squeeze=False)
    grid = np.arange(0, 4000, 1.0)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        for key, label, sign in (("model", "equipot", 1), ("xtb", "GFN2-xTB", -1)):
            nu = np.array(row[f"frequencies_{key}_cm"])
            inten = np.array(row[f"intensities_{key}_km_mol"])
            ax.plot(grid, sign * broaden(grid, nu, inten / inten.max(), 15.0), label=label)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{row['molecule']}: |Δν| MAE {row['frequency_mae_cm']:.1f} cm⁻¹", fontsize=9)
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("wavenumber (cm⁻¹)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cmd_evaluate(args) -> None:
    from equipot.model.io import load_model

    model = load_model(args.out / "run" / "best.eqp")
    xtb = XTB()
    report = {"held_out": held_out_errors(model, read(args.out / "test.xyz", ":"))}
    report["ir"] = [ir_comparison(model, name, args.out, xtb) for name in IR]
    plot_ir(args.out / "ir_vs_xtb.png", report["ir"])
    (args.out / "evaluate.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"held_out": report["held_out"],
                      "ir": [{k: v for k, v in r.items() if not k.startswith(("freq", "inten"))}
                             | {"frequency_mae_cm": r["frequency_mae_cm"]} for r in report["ir"]]},
                     indent=1))  # fmt: skip


def cmd_md(args) -> None:
    """NVE MD of one molecule with the trained model → IR from its dipole vs its harmonic IR."""
    from equipot.model.io import load_model
    from equipot.properties.relax import relax
    from equipot.properties.spectra import (
        broaden,
        dipole_spectrum,
        harmonic_spectrum,
        trajectory_dipoles,
    )
    from equipot.sim import nve
    from equipot.sim.potentials import ModelPotential
    from equipot.sim.state import SimState

    model = load_model(args.out / "run" / "best.eqp")
    minima = json.loads((args.out / "minima.json").read_text())
    m = minima[args.molecule]
    atoms = relax(Atoms(numbers=m["numbers"], positions=m["positions"]), model, fmax=1e-5)
    harmonic = harmonic_spectrum(model, atoms, raman=False)
    potential = ModelPotential(model)
    spectra = []
    start = time.perf_counter()
    for seed in range(args.runs):
        state = nve.init(
            SimState.from_atoms(atoms, temperature=2 * args.temperature, seed=seed), potential
        )
        frames = []
        for step in range(args.steps):
            state = nve.step(state, potential, dt=args.dt)
            if step % args.every == 0:
                frames.append(state.to_atoms()[0])
        wavenumbers, intensity = dipole_spectrum(
            trajectory_dipoles(model, frames), args.dt * args.every
        )
        spectra.append(intensity)
    intensity = np.mean(spectra, axis=0)
    grid = wavenumbers
    stick = broaden(grid, harmonic.frequencies_cm, harmonic.ir_intensities, 20.0)
    peaks = []
    for nu, inten in zip(harmonic.frequencies_cm, harmonic.ir_intensities, strict=True):
        window = np.abs(grid - nu) < 80
        if inten > 0.05 * harmonic.ir_intensities.max() and window.any():
            peaks.append(
                {
                    "harmonic_cm": float(nu),
                    "md_peak_cm": float(grid[window][np.argmax(intensity[window])]),
                }
            )
    result = {"molecule": args.molecule, "temperature_K": args.temperature, "runs": args.runs,
              "steps": args.steps, "dt_fs": args.dt, "wall_s": time.perf_counter() - start,
              "peaks": peaks}  # fmt: skip
    (args.out / f"md_ir_{args.molecule}.json").write_text(json.dumps(result, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(grid, intensity / intensity.max(), label=f"MD {args.temperature:.0f} K (dipole ACF)")
    ax.plot(grid, stick / stick.max(), label="harmonic (same model)", alpha=0.8)
    ax.set_xlim(0, 4200)
    ax.set_xlabel("wavenumber (cm⁻¹)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / f"md_ir_{args.molecule}.png", dpi=120)
    print(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["data", "train", "evaluate", "md"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/response"))
    parser.add_argument("--per-molecule", type=int, default=60)
    parser.add_argument("--budget-min", type=float, default=20.0)
    parser.add_argument("--molecule", default="H2O")
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--steps", type=int, default=40000)
    parser.add_argument("--dt", type=float, default=0.25)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate, "md": cmd_md}[args.command](
        args
    )


if __name__ == "__main__":
    main()
