"""``equipot phonons [MODEL] STRUCTURE --supercell a b c``: bands, DOS, thermal properties."""

from __future__ import annotations

import argparse

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
        "phonons",
        help="phonon band structure, DOS and harmonic thermal properties",
        description="Force constants from the Hessian of a supercell (autograd for a model, "
        "finite differences for --calculator); band structure along the lattice's standard "
        "path, DOS on a q-mesh, harmonic thermal properties. Writes phonons.json, bands.png, "
        "thermal.png and, with --phonopy, FORCE_CONSTANTS + phonopy_params.yaml. Imaginary "
        "frequencies are negative numbers.",
    )
    add_source_arguments(parser, "STRUCTURE")
    parser.add_argument(
        "--supercell", type=int, nargs=3, default=[3, 3, 3], metavar=("A", "B", "C")
    )
    parser.add_argument("--relax", type=float, metavar="FMAX", help="relax cell+positions first")
    parser.add_argument(
        "--method", default="auto", choices=["auto", "autograd", "finite-difference"]
    )
    parser.add_argument(
        "--delta", type=float, default=None, help="finite-difference step, Å (default 0.01)"
    )
    parser.add_argument("--path", help="special-point path, e.g. GXWKGLUWLK,UX (default: ASE's)")
    parser.add_argument("--npoints", type=int, default=300, help="q-points along the path")
    parser.add_argument(
        "--mesh", type=int, nargs=3, default=[20, 20, 20], metavar=("N1", "N2", "N3")
    )
    parser.add_argument("--sigma", type=float, default=0.1, help="DOS Gaussian smearing, THz")
    parser.add_argument("--temperatures", default="0:1000:10", help="K, start:stop:step or a,b,c")
    parser.add_argument("--phonopy", action="store_true", help="also write phonopy files")
    return parser


def run(args: argparse.Namespace) -> int:
    from equipot.cli.options import finite_difference_delta
    from equipot.properties.phonons import compute_phonons
    from equipot.properties.relax import relax

    finite_difference_delta(args, default=0.01)
    source, atoms, out = load_inputs(args)
    if args.relax:
        atoms = relax(atoms, source, fmax=args.relax, cell=True)
    phonons = compute_phonons(
        atoms, source, args.supercell, method=args.method, delta=args.delta, progress=True
    )
    bands = phonons.band_structure(args.path, npoints=args.npoints)
    dos = phonons.dos(args.mesh, sigma=args.sigma)
    thermal = phonons.thermal_properties(temperatures(args.temperatures), args.mesh)

    special = {}
    print(f"path {bands['path']}, {len(atoms)} atom(s) per cell, supercell {args.supercell}")
    for label, q in bands["special_points"].items():
        nu = phonons.frequencies([q])[0]
        special[label] = nu
        print(f"  {label:>2} {np.round(q, 4)}: " + " ".join(f"{v:8.4f}" for v in nu) + " THz")
    lowest = float(bands["frequencies"].min())
    mesh_min = dos["min_frequency"]
    imaginary = min(lowest, mesh_min) < -0.05
    if imaginary:
        print(
            f"IMAGINARY MODES: lowest frequency {min(lowest, mesh_min):.3f} THz "
            "(negative = imaginary): the structure is dynamically unstable or not relaxed"
        )
    index_300 = np.argmin(np.abs(thermal["temperature"] - 300.0))
    if abs(thermal["temperature"][index_300] - 300.0) < 1e-6:
        print(
            "300 K: F = {:.4f} kJ/mol, S = {:.4f} J/K/mol, Cv = {:.4f} J/K/mol".format(
                thermal["free_energy"][index_300],
                thermal["entropy"][index_300],
                thermal["heat_capacity"][index_300],
            )
        )

    write_json(
        out / "phonons.json",
        {
            "units": {"frequency": "THz", "q": "fractional (reciprocal of the input cell)"},
            "supercell": args.supercell,
            "imaginary_modes": imaginary,
            "lowest_frequency": min(lowest, mesh_min),
            "special_points": special,
            "band_structure": bands,
            "dos": dos,
            "thermal_properties": {
                "units": {"F/U": "kJ/mol", "S/Cv": "J/K/mol", "per": "mole of unit cells"},
                **thermal,
            },
        },
    )
    _plot(out, bands, dos, thermal)
    written = ["phonons.json", "bands.png", "thermal.png"]
    if args.phonopy:
        written += [p.name for p in phonons.write_phonopy(out)]
    print(f"wrote {out}/: " + ", ".join(written))
    return 0


def _plot(out, bands, dos, thermal) -> None:
    plt = pyplot()
    fig, (ax, ax_dos) = plt.subplots(
        1, 2, figsize=(9, 4.5), sharey=True, gridspec_kw={"width_ratios": [4, 1]}
    )
    # separate segments where the path jumps (x repeats) so no line joins the two ends
    cuts = np.flatnonzero(np.isclose(np.diff(bands["x"]), 0.0)) + 1
    for x, nu in zip(np.split(bands["x"], cuts), np.split(bands["frequencies"], cuts), strict=True):
        ax.plot(x, nu, color="C0", lw=1)
    for x in bands["special_x"]:
        ax.axvline(x, color="0.6", lw=0.6)
    ax.axhline(0, color="k", lw=0.6)
    labels = [s.replace("G", r"$\Gamma$") for s in bands["labels"]]
    ax.set_xticks(bands["special_x"], labels)
    ax.set(xlim=(bands["x"][0], bands["x"][-1]), ylabel="frequency (THz; < 0: imaginary)")
    ax_dos.plot(dos["dos"], dos["frequency"], color="C1")
    ax_dos.set(xlabel="DOS (1/THz)")
    fig.tight_layout()
    fig.savefig(out / "bands.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    t = thermal["temperature"]
    axes[0].plot(t, thermal["free_energy"], label="F")
    axes[0].plot(t, thermal["internal_energy"], label="U")
    axes[0].set(xlabel="T (K)", ylabel="kJ/mol")
    axes[0].legend()
    axes[1].plot(t, thermal["entropy"], label="S")
    axes[1].plot(t, thermal["heat_capacity"], label="$C_v$")
    axes[1].set(xlabel="T (K)", ylabel="J/K/mol")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out / "thermal.png", dpi=120)
    plt.close(fig)
