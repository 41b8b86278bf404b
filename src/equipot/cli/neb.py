"""``equipot neb``: minimum-energy path and barrier by the nudged elastic band method."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from equipot.cli.sim_common import add_model_arguments, load_potential, read_structure


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "neb",
        help="nudged elastic band between two structures",
        description=(
            "Nudged elastic band (improved tangent, optional climbing image) between two "
            "structures with the same atoms in the same order. Writes the barrier and path "
            "energies as JSON, a plot, and the band as extended XYZ. Units: eV, Å."
        ),
    )
    add_model_arguments(p)
    p.add_argument("initial", type=Path, help="initial state (relaxed, or use --relax-endpoints)")
    p.add_argument("final", type=Path, help="final state")
    p.add_argument("--images", type=int, default=7, help="internal images (default 7)")
    p.add_argument("--climb", action="store_true", help="climbing image (exact saddle point)")
    p.add_argument("--fmax", type=float, default=0.05, help="force threshold, eV/Å")
    p.add_argument("--spring", type=float, default=0.1, help="spring constant, eV/Å²")
    p.add_argument("--steps", type=int, default=2000, help="maximum iterations")
    p.add_argument(
        "--relax-endpoints",
        action="store_true",
        help="relax both endpoints (L-BFGS, same fmax) first",
    )
    p.add_argument("--out", type=Path, default=Path("neb.json"), help="results JSON")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: JSON with .png)")
    p.add_argument(
        "--trajectory",
        type=Path,
        default=None,
        help="final band, extxyz (default: JSON with .extxyz)",
    )
    return p


def run(args) -> int:
    from ase.io import write

    from equipot.progress import progress_bar
    from equipot.sim.neb import neb
    from equipot.sim.relax import relax

    if args.images < 1:
        raise ValueError(f"--images must be ≥ 1, got {args.images}")
    potential = load_potential(args.model, args.dtype, skin=0.5)
    initial = read_structure(args.initial)
    final = read_structure(args.final)
    if args.relax_endpoints:
        initial = relax(initial, potential, method="lbfgs", fmax=args.fmax).atoms()
        final = relax(final, potential, method="lbfgs", fmax=args.fmax).atoms()
    bar = progress_bar(args.steps, "neb", "it")

    def callback(info: dict) -> None:
        bar.update(1)
        bar.set_postfix({"fmax": f"{info['fmax']:.3f}", "climb": info["climb"]})

    try:
        result = neb(
            initial,
            final,
            potential,
            n_images=args.images,
            climb=args.climb,
            spring=args.spring,
            fmax=args.fmax,
            max_steps=args.steps,
            callback=callback,
        )
    finally:
        bar.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result.to_dict(), indent=2))
    band = args.trajectory or args.out.with_suffix(".extxyz")
    write(band, result.images, format="extxyz")
    png = plot_path(result, args.plot or args.out.with_suffix(".png"))
    status = "converged" if result.converged else "NOT converged"
    print(
        f"equipot neb: {status} after {result.iterations} iterations; barrier "
        f"{result.barrier:.4f} eV (reverse {result.reverse_barrier:.4f} eV); "
        f"wrote {args.out}, {band}, {png}"
    )
    return 0 if result.converged else 1


def plot_path(result, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = result.energies - result.energies[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.path, e, "o-", lw=1.5)
    top = int(np.argmax(e))
    ax.plot(result.path[top], e[top], "r*", ms=14, label=f"barrier {result.barrier:.3f} eV")
    ax.set_xlabel("reaction coordinate (Å)")
    ax.set_ylabel("energy relative to initial (eV)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
