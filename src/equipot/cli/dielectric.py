"""``equipot dielectric MODEL CRYSTAL``: ε∞, ε₀, Born charges, IR-active Γ modes, piezo tensor."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from equipot.cli._properties import pyplot, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "dielectric",
        help="dielectric tensors, Born charges and piezoelectric tensor of a crystal",
        description="From a model with dipole (and polarizability) heads, all by autograd: "
        "ε∞ = 1 + α/(ε₀Ω), ε₀ = ε∞ + the ionic part from the Born charges and the Γ-point "
        "force constants (per mode), the clamped- and relaxed-ion piezoelectric tensors. "
        "Writes dielectric.json and dielectric.png (mode contributions to ε₀).",
    )
    parser.add_argument("model", type=Path, help="equipot model file with a dipole head")
    parser.add_argument("structure", type=Path, help="a 3D-periodic structure")
    parser.add_argument("--index", default="-1", help="frame of STRUCTURE (ASE index)")
    parser.add_argument("--relax", type=float, metavar="FMAX", help="relax positions first")
    parser.add_argument("--out", type=Path, help="output folder (default: NAME-dielectric/)")
    return parser


def run(args: argparse.Namespace) -> int:
    from equipot.cli.sim_common import read_structure
    from equipot.model.io import load_model
    from equipot.properties.dielectric import E_PER_A2_TO_C_PER_M2, dielectric, voigt_piezo

    if not args.model.exists():
        raise FileNotFoundError(f"no such model file: {args.model}")
    model = load_model(args.model)
    atoms = read_structure(args.structure, args.index)
    if args.relax:
        from equipot.properties.relax import relax

        atoms = relax(atoms, model, fmax=args.relax)
    result = dielectric(model, atoms)
    out = args.out or Path(f"{args.structure.stem}-dielectric")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "dielectric.json", result.as_dict())
    png = _plot(out / "dielectric.png", result)
    np.set_printoptions(precision=4, suppress=True)
    print(f"ε∞ =\n{result.epsilon_inf}\nε₀ =\n{result.epsilon_0}")
    print(f"piezoelectric e (C/m², Voigt) =\n{voigt_piezo(result.piezo * E_PER_A2_TO_C_PER_M2)}")
    print(f"equipot dielectric: wrote {out / 'dielectric.json'}, {png}")
    return 0


def _plot(path: Path, result) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    weight = np.trace(result.mode_epsilon, axis1=1, axis2=2) / 3
    ax.bar(result.frequencies_cm, weight, width=max(5.0, np.ptp(result.frequencies_cm) / 80))
    ax.set_xlabel("Γ-mode wavenumber (cm⁻¹)")
    ax.set_ylabel("contribution to tr ε₀ / 3")
    ax.set_title(
        f"ε∞ = {np.trace(result.epsilon_inf) / 3:.3f},  ε₀ = {np.trace(result.epsilon_0) / 3:.3f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
