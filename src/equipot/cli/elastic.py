"""``equipot elastic [MODEL] STRUCTURE``: C_ij, Born stability, Voigt–Reuss–Hill moduli."""

from __future__ import annotations

import argparse

import numpy as np

from equipot.cli._properties import add_source_arguments, load_inputs, pyplot, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "elastic",
        help="elastic constants (6×6 Voigt), stability and polycrystalline moduli",
        description="Relaxed-ion elastic constants C_ij (GPa) from energy–strain and "
        "stress–strain fits around the relaxed cell; Born stability; Voigt–Reuss–Hill bulk, "
        "shear and Young's moduli and Poisson ratio. Writes elastic.json.",
    )
    add_source_arguments(parser)
    parser.add_argument("--step", type=float, default=0.005, help="strain increment")
    parser.add_argument("--points", type=int, default=2, help="strains per side (±k·step)")
    parser.add_argument(
        "--fmax", type=float, default=None, help="ionic relaxation, eV/Å (default 1e-4)"
    )
    parser.add_argument(
        "--no-relax-cell", action="store_true", help="use the cell as given (keeps pre-stress)"
    )
    parser.add_argument("--clamped-ion", action="store_true", help="do not relax the ions")
    parser.add_argument(
        "--methods", nargs="+", default=["energy", "stress"], choices=["energy", "stress"]
    )
    return parser


def _print_matrix(title: str, c: np.ndarray) -> None:
    print(title)
    for row in c:
        print("  " + " ".join(f"{v:9.2f}" for v in row))


def run(args: argparse.Namespace) -> int:
    from equipot.cli.options import reject_unused, with_defaults
    from equipot.properties.elastic import born_stability, elastic_constants, vrh_moduli

    reject_unused(
        args, {"fmax": (not args.clamped_ion, "the ionic relaxation (not --clamped-ion)")}
    )
    with_defaults(args, {"fmax": 1e-4})
    source, atoms, out = load_inputs(args)
    result = elastic_constants(
        atoms,
        source,
        methods=tuple(args.methods),
        step=args.step,
        points=args.points,
        relax_cell=not args.no_relax_cell,
        relax_ions=not args.clamped_ion,
        fmax=args.fmax,
        progress=True,
    )
    print(
        f"reference cell lengths {np.round(result.reference.cell.lengths(), 5)} Å, residual "
        f"stress {np.abs(result.residual_stress).max():.2e} GPa"
    )
    data = {"units": "GPa", "residual_stress": result.residual_stress}
    if result.C_energy is not None:
        _print_matrix("C from energy–strain (GPa):", result.C_energy)
        data["C_energy"] = result.C_energy
    if result.C_stress is not None:
        _print_matrix("C from stress–strain (GPa):", result.C_stress)
        data["C_stress"] = result.C_stress
    if result.C_energy is not None and result.C_stress is not None:
        gap = np.abs(result.C_energy - result.C_stress).max() / np.abs(result.C_stress).max()
        print(f"energy vs stress fits: max difference {100 * gap:.3f} % of max |C_ij|")
        data["fit_difference"] = gap
    stable, eigenvalues = born_stability(result.C)
    print(
        f"Born stability: {'stable' if stable else 'UNSTABLE'} (eigenvalues of C: "
        + ", ".join(f"{v:.1f}" for v in eigenvalues)
        + " GPa)"
    )
    moduli = vrh_moduli(result.C)
    print(
        "Voigt–Reuss–Hill: K = {K_H:.2f} GPa, G = {G_H:.2f} GPa, E = {E_H:.2f} GPa, "
        "ν = {nu_H:.4f}".format(**moduli)
    )
    data.update(
        {
            "born_stable": stable,
            "C_eigenvalues": eigenvalues,
            "moduli": moduli,
            "strains": result.strains,
            "relaxed_ions": not args.clamped_ion,
        }
    )
    write_json(out / "elastic.json", data)
    _plot(out, result)
    print(f"wrote {out}/elastic.json, elastic.png")
    return 0


def _plot(out, result) -> None:
    plt = pyplot()
    fig, (ax, ax_c) = plt.subplots(1, 2, figsize=(10, 4))
    volume = result.data["volume"]
    labels = ["xx", "yy", "zz", "yz", "xz", "xy"]
    for i in range(6):
        energies = np.asarray(result.data["energies"][(i,)])
        ax.plot(
            100 * result.strains,
            1000 * (energies - energies[len(energies) // 2]) / volume,
            "o-",
            label=labels[i],
        )
    ax.set(xlabel="Voigt strain (%)", ylabel="ΔE / V0 (meV/Å$^3$)", title="energy–strain")
    ax.legend()
    image = ax_c.imshow(
        result.C, cmap="RdBu_r", vmin=-np.abs(result.C).max(), vmax=np.abs(result.C).max()
    )
    for (i, j), v in np.ndenumerate(result.C):
        ax_c.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax_c.set(
        xticks=range(6),
        yticks=range(6),
        xticklabels=range(1, 7),
        yticklabels=range(1, 7),
        title="C$_{ij}$ (GPa)",
    )
    fig.colorbar(image, ax=ax_c)
    fig.tight_layout()
    fig.savefig(out / "elastic.png", dpi=120)
    plt.close(fig)
