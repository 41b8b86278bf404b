"""``equipot vibrations [MODEL] STRUCTURE``: normal modes and harmonic thermochemistry."""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from equipot.cli._properties import (
    add_source_arguments,
    load_inputs,
    pyplot,
    temperatures,
    write_json,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "vibrations",
        help="normal modes, frequencies and harmonic thermochemistry",
        description="Normal modes from the mass-weighted Hessian (autograd for a model, finite "
        "differences for --calculator) with rigid-body modes projected out; zero-point energy, "
        "U, S, F, Cv vs temperature. Writes modes.extxyz (per-atom 'mode' vectors), "
        "vibrations.json and thermo.png.",
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--relax", type=float, metavar="FMAX", help="relax positions to FMAX eV/Å first"
    )
    parser.add_argument(
        "--method", default="auto", choices=["auto", "autograd", "finite-difference"]
    )
    parser.add_argument(
        "--delta", type=float, default=None, help="finite-difference step, Å (default 0.005)"
    )
    parser.add_argument(
        "--project",
        default="auto",
        choices=["auto", "translations", "all", "none"],
        help="rigid modes to remove (auto: rotations too for a molecule)",
    )
    parser.add_argument("--temperatures", default="0:1000:50", help="K, start:stop:step or a,b,c")
    return parser


def run(args: argparse.Namespace) -> int:
    from equipot.cli.options import finite_difference_delta
    from equipot.properties.relax import relax
    from equipot.properties.vibrations import harmonic_thermo, vibrational_modes, write_modes

    finite_difference_delta(args, default=0.005)
    source, atoms, out = load_inputs(args)
    if args.relax:
        atoms = relax(atoms, source, fmax=args.relax)
    atoms.calc = source
    fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    if fmax > 1e-2:
        print(f"warning: max force {fmax:.3g} eV/Å: not a stationary point (use --relax)")
    result = vibrational_modes(
        atoms, source, method=args.method, delta=args.delta, project=args.project, progress=True
    )
    temps = temperatures(args.temperatures)
    with warnings.catch_warnings():  # imaginary modes are reported below instead
        warnings.simplefilter("ignore", UserWarning)
        thermo = harmonic_thermo(result.energies, temps)

    print(f"{'mode':>4} {'cm^-1':>10} {'THz':>9} {'meV':>9}")
    for k, (cm, thz, ev) in enumerate(
        zip(result.frequencies_cm, result.frequencies_thz, result.energies, strict=True)
    ):
        flag = "  imaginary" if k in result.imaginary else ""
        print(f"{k:>4} {cm:>10.2f} {thz:>9.4f} {1000 * ev:>9.3f}{flag}")
    if len(result.imaginary):
        print(
            f"{len(result.imaginary)} imaginary mode(s), shown as negative frequencies and left "
            "out of the thermochemistry"
        )
    print(f"zero-point energy: {thermo['ZPE'][0]:.5f} eV")

    write_modes(out / "modes.extxyz", result)
    write_json(
        out / "vibrations.json",
        {
            "frequencies_cm": result.frequencies_cm,
            "frequencies_thz": result.frequencies_thz,
            "energies_eV": result.energies,
            "imaginary_modes": result.imaginary,
            "max_force": fmax,
            "thermochemistry": {
                "units": {"T": "K", "ZPE": "eV", "U": "eV", "F": "eV", "S": "eV/K", "Cv": "eV/K"},
                **thermo,
            },
        },
    )
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].vlines(result.frequencies_cm, 0, 1)
    axes[0].set(xlabel="wavenumber (cm$^{-1}$)", yticks=[], title="modes (negative: imaginary)")
    axes[1].plot(thermo["T"], thermo["U"], label="U")
    axes[1].plot(thermo["T"], thermo["F"], label="F")
    axes[1].set(xlabel="T (K)", ylabel="eV")
    axes[1].legend()
    axes[2].plot(thermo["T"], thermo["S"] * 1000, label="S")
    axes[2].plot(thermo["T"], thermo["Cv"] * 1000, label="$C_v$")
    axes[2].set(xlabel="T (K)", ylabel="meV/K")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out / "thermo.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out}/modes.extxyz, vibrations.json, thermo.png")
    return 0
