"""``equipot spectra MODEL STRUCTURE --ir --raman`` and ``--from-md TRAJ``: IR / Raman spectra."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from equipot.cli._properties import pyplot, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "spectra",
        help="harmonic IR / Raman spectra, and IR from the dipole of an MD trajectory",
        description="Harmonic IR intensities (Born charges ∂μ/∂r and normal modes, km/mol) and "
        "Raman activities (∂α/∂Q, Å⁴/amu) of STRUCTURE from a model with dipole / "
        "polarizability heads; with --from-md, the IR lineshape from the dipole autocorrelation "
        "of a trajectory (the model's dipole of every frame). Writes modes.csv, spectrum.csv "
        "(broadened curves on a grid), spectra.json and spectra.png.",
    )
    parser.add_argument("model", type=Path, help="equipot model file with a dipole head")
    parser.add_argument("structure", type=Path, nargs="?", help="structure for harmonic spectra")
    parser.add_argument("--index", default="-1", help="frame of STRUCTURE (ASE index)")
    parser.add_argument("--ir", action="store_true", help="harmonic IR intensities")
    parser.add_argument("--raman", action="store_true", help="harmonic Raman activities")
    parser.add_argument("--from-md", type=Path, metavar="TRAJ", help="MD trajectory for IR")
    parser.add_argument(
        "--md-timestep", type=float, help="fs between frames (default: the frames' time_fs)"
    )
    parser.add_argument("--relax", type=float, metavar="FMAX", help="relax to FMAX eV/Å first")
    parser.add_argument("--width", type=float, default=10.0, help="Lorentzian FWHM, cm⁻¹")
    parser.add_argument("--range", type=float, nargs=2, default=(0.0, 4000.0), metavar=("LO", "HI"))
    parser.add_argument("--out", type=Path, help="output folder (default: NAME-spectra/)")
    return parser


def run(args: argparse.Namespace) -> int:
    from equipot.cli.options import reject_unused
    from equipot.model.io import load_model
    from equipot.properties.spectra import broaden, harmonic_spectrum, write_table

    if not args.model.exists():
        raise FileNotFoundError(f"no such model file: {args.model}")
    model = load_model(args.model)
    if args.structure is None and args.from_md is None:
        raise ValueError("give a STRUCTURE (harmonic spectra) and/or --from-md TRAJ")
    harmonic = (args.structure is not None, "harmonic spectra of a STRUCTURE")
    reject_unused(
        args,
        {
            "md_timestep": (args.from_md is not None, "MD spectra (--from-md TRAJ)"),
            "relax": harmonic,
            "raman": harmonic,
        },
    )
    names = model.config.heads
    ir = args.ir or not (args.raman or args.from_md)
    raman = args.raman or (not args.ir and not args.from_md and "polarizability" in names)
    stem = (args.structure or args.from_md).stem
    out = args.out or Path(f"{stem}-spectra")
    out.mkdir(parents=True, exist_ok=True)
    lo, hi = args.range
    grid = np.arange(lo, hi + 1.0, 1.0)
    curves: dict[str, np.ndarray] = {"wavenumber_cm": grid}
    summary: dict = {"model": str(args.model)}
    if args.structure is not None and (ir or raman):
        atoms = _structure(args.structure, args.index)
        if args.relax:
            from equipot.properties.relax import relax

            atoms = relax(atoms, model, fmax=args.relax)
        spectrum = harmonic_spectrum(model, atoms, ir=ir, raman=raman)
        real = spectrum.frequencies_cm > 0
        if np.any(~real):
            print(f"warning: {int(np.sum(~real))} imaginary mode(s) left out of the spectra")
        write_table(out / "modes.csv", spectrum.rows())
        summary["modes"] = spectrum.rows()
        nu = spectrum.frequencies_cm[real]
        if ir:
            curves["ir_km_mol_per_cm"] = broaden(
                grid, nu, spectrum.ir_intensities[real], args.width
            )
        if raman:
            curves["raman_A4_amu_per_cm"] = broaden(
                grid, nu, spectrum.raman_activities[real], args.width
            )
    if args.from_md is not None:
        curves["md_ir_normalised"], summary["md"] = _md_spectrum(model, args, grid)
    write_table(
        out / "spectrum.csv",
        [{k: float(v[i]) for k, v in curves.items()} for i in range(len(grid))],
    )
    write_json(out / "spectra.json", summary)
    png = _plot(out / "spectra.png", curves, summary.get("modes"))
    print(f"equipot spectra: wrote {out / 'modes.csv'}, {out / 'spectrum.csv'}, {png}")
    for row in summary.get("modes", []):
        if row["frequency_cm"] > 0:
            extra = "".join(
                f"  {k} {row[k]:10.3f}" for k in ("ir_km_mol", "raman_A4_amu") if k in row
            )
            print(f"  {row['frequency_cm']:9.1f} cm⁻¹{extra}")
    return 0


def _structure(path: Path, index: str):
    from equipot.cli.sim_common import read_structure

    return read_structure(path, index)


def _md_spectrum(model, args, grid: np.ndarray) -> tuple[np.ndarray, dict]:
    from ase.io import read

    from equipot.properties.spectra import dipole_spectrum, trajectory_dipoles

    if not args.from_md.exists():
        raise FileNotFoundError(f"no such trajectory: {args.from_md}")
    frames = read(args.from_md, index=":")
    dt = args.md_timestep
    if dt is None:
        times = [f.info.get("time_fs") for f in frames[:2]]
        if len(frames) < 2 or None in times:
            raise ValueError(f"{args.from_md}: frames carry no time_fs; give --md-timestep")
        dt = float(times[1] - times[0])
    dipoles = trajectory_dipoles(model, frames)
    wavenumbers, intensity = dipole_spectrum(dipoles, dt, max_cm=grid[-1] + 1.0)
    curve = np.interp(grid, wavenumbers, intensity)
    info = {"frames": len(frames), "dt_fs": dt, "resolution_cm": float(wavenumbers[1])}
    return curve / max(float(curve.max()), 1e-300), info


def _plot(path: Path, curves: dict, modes: list | None) -> Path:
    plt = pyplot()
    panels = [k for k in curves if k != "wavenumber_cm"]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7, 2.6 * len(panels)), sharex=True, squeeze=False
    )
    grid = curves["wavenumber_cm"]
    labels = {
        "ir_km_mol_per_cm": ("harmonic IR", "ir_km_mol"),
        "raman_A4_amu_per_cm": ("harmonic Raman", "raman_A4_amu"),
        "md_ir_normalised": ("IR from MD (dipole autocorrelation)", None),
    }
    for ax, key in zip(axes[:, 0], panels, strict=True):
        title, stick = labels[key]
        ax.plot(grid, curves[key], lw=1.2)
        if modes and stick:
            twin = ax.twinx()
            for row in modes:
                if row["frequency_cm"] > 0:
                    twin.vlines(row["frequency_cm"], 0, row[stick], color="C1", lw=1)
            twin.set_ylabel(stick.replace("_", " "), color="C1")
            twin.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
    axes[-1, 0].set_xlabel("wavenumber (cm⁻¹)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
