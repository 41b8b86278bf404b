"""``equipot hull MODEL --elements A B``: mixing energies and the convex hull of a binary."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "hull",
        help="binary-alloy mixing energy ΔE_mix(x) and convex hull (JSON + PNG)",
        description="Relax the pure elements, random supercells at each composition and the "
        "ordered prototypes of the lattice (fcc: L1_2, L1_0; bcc: B2) with MODEL (or "
        "--calculator emt), and report formation energies, ΔE_mix(x) and the lower convex "
        "hull.",
    )
    p.add_argument("model", nargs="?", help="model file (.eqp); or use --calculator")
    p.add_argument("--elements", nargs=2, required=True, metavar=("A", "B"))
    p.add_argument("--calculator", help="a reference calculator instead of a model (e.g. emt)")
    p.add_argument("--head", help="head of a multi-head model file")
    p.add_argument("--lattice", default="fcc", choices=["fcc", "bcc"])
    p.add_argument("--size", type=int, default=2, help="supercell of the conventional cube")
    p.add_argument("--samples", type=int, default=3, help="random cells per composition")
    p.add_argument("--x", type=float, nargs="+", help="compositions (fraction of B)")
    p.add_argument("--fmax", type=float, default=0.01, help="relaxation threshold, eV/Å")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="hull", help="output directory (hull.json, hull.png)")


def run(args: argparse.Namespace) -> int:
    import json

    from equipot.properties.alloys import mixing_energies

    calc = _calculator(args)
    n = 4 * args.size**3 if args.lattice == "fcc" else 2 * args.size**3
    x_values = args.x or [k / 8 for k in range(1, 8)]
    bad = [x for x in x_values if not 0.0 < x < 1.0]
    if bad:
        raise ValueError(f"--x values must lie strictly between 0 and 1, got {bad}")
    result = mixing_energies(
        calc,
        *args.elements,
        lattice=args.lattice,
        x_values=x_values,
        size=args.size,
        samples=args.samples,
        seed=args.seed,
        fmax=args.fmax,
        progress=True,
    )
    result["cell_atoms"] = n
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hull.json").write_text(json.dumps(result, indent=1))
    plot_hull(out / "hull.png", result)
    a, b = args.elements
    print(f"ΔE_mix(x) of {a}1-x {b}x (meV/atom, mean ± std over {args.samples} random cells):")
    for x, v in result["mixing_energy"].items():
        print(f"  x = {float(x):.3f}: {1e3 * v['mean']:8.2f} ± {1e3 * v['std']:.2f}")
    print("hull vertices: " + ", ".join(result["hull_labels"]))
    print(f"results: {out / 'hull.json'}, plot: {out / 'hull.png'}")
    return 0


def _calculator(args):
    if args.calculator:
        from equipot.transfer.teachers import teacher

        return teacher(args.calculator)
    if not args.model:
        raise ValueError("give a model file or --calculator")
    from equipot.calculator import EquipotCalculator

    return EquipotCalculator(args.model, head=args.head)


def plot_hull(path: Path, result: dict, reference: dict | None = None) -> Path:
    """Formation energies, ΔE_mix(x) and the hull (and a reference's, if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for data, style, name in ((result, "-", "model"), (reference, "--", "reference")):
        if data is None:
            continue
        xs = [e["x"] for e in data["entries"]]
        es = [1e3 * e["formation_energy"] for e in data["entries"]]
        ax.scatter(xs, es, s=12, alpha=0.6, label=f"{name}: structures")
        h = data["hull"]
        ax.plot(
            h["vertices_x"],
            [1e3 * v for v in h["vertices_e"]],
            "k" + style,
            lw=1,
            label=f"{name}: hull",
        )
        mx = [float(x) for x in data["mixing_energy"]]
        my = [1e3 * v["mean"] for v in data["mixing_energy"].values()]
        ax.plot([0, *mx, 1], [0, *my, 0], style, label=f"{name}: ΔE_mix (random)")
    a, b = result["elements"]
    ax.set_xlabel(f"x in {a}$_{{1-x}}${b}$_x$")
    ax.set_ylabel("formation energy (meV/atom)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
