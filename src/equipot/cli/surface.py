"""``equipot surface [MODEL] BULK --miller h k l``: surface energy with convergence check."""

from __future__ import annotations

import argparse

from equipot.cli._properties import add_source_arguments, load_inputs, pyplot, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "surface",
        help="surface energy γ(hkl) with slab-thickness and vacuum convergence",
        description="γ = (E_slab − N·ε_bulk)/(2A) for relaxed slabs cut from the relaxed bulk "
        "(Miller indices of the BULK cell you give: use the conventional cubic cell for cubic "
        "indices), over slab thicknesses and vacuum widths. Writes surface.json, surface.png.",
    )
    add_source_arguments(parser, "BULK")
    parser.add_argument(
        "--miller",
        type=int,
        nargs=3,
        action="append",
        required=True,
        metavar=("H", "K", "L"),
        help="Miller indices (repeat the option for several surfaces)",
    )
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[4, 6, 8],
        help="slab thicknesses, in repeat units of BULK along the normal",
    )
    parser.add_argument(
        "--vacuum", type=float, nargs="+", default=[8.0, 12.0], help="vacuum on each side, Å"
    )
    parser.add_argument("--tolerance", type=float, default=1e-3, help="convergence, eV/Å²")
    parser.add_argument("--fmax", type=float, default=1e-3, help="slab relaxation, eV/Å")
    return parser


def run(args: argparse.Namespace) -> int:
    from equipot.properties.surfaces import surface_energy_convergence

    source, bulk, out = load_inputs(args)
    results = []
    for miller in args.miller:
        r = surface_energy_convergence(
            bulk,
            source,
            miller,
            layers=args.layers,
            vacuums=args.vacuum,
            tolerance=args.tolerance,
            fmax=args.fmax,
            progress=True,
        )
        results.append(r)
        print(
            f"γ{tuple(miller)} = {r['gamma']:.5f} eV/Å² = {r['gamma_J_m2']:.4f} J/m²  "
            f"({'converged' if r['converged'] else 'NOT converged'}: Δlayers "
            f"{r['delta_layers']:.1e}, Δvacuum {r['delta_vacuum']:.1e} eV/Å²)"
        )
        for s in r["thickness_series"] + r["vacuum_series"][1:]:
            print(
                f"    layers {s['layers']:>3}  vacuum {s['vacuum']:5.1f} Å  atoms "
                f"{s['n_atoms']:>4}  γ {s['gamma']:.5f} eV/Å² (unrelaxed "
                f"{s['gamma_unrelaxed']:.5f})"
            )
    write_json(
        out / "surface.json", {"units": "eV/Å² (gamma), J/m² (gamma_J_m2)", "surfaces": results}
    )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for r in results:
        series = r["thickness_series"]
        ax.plot(
            [s["layers"] for s in series],
            [s["gamma_J_m2"] for s in series],
            "o-",
            label=str(tuple(r["miller"])),
        )
    ax.set(xlabel="slab layers", ylabel="γ (J/m²)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "surface.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out}/surface.json, surface.png")
    return 0
