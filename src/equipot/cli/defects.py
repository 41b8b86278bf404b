"""``equipot defects [MODEL] BULK``: vacancy formation energy and migration barrier."""

from __future__ import annotations

import argparse

from equipot.cli._properties import add_source_arguments, load_inputs, pyplot, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "defects",
        help="vacancy formation energy and (with --migration) its migration barrier",
        description="Relaxed vacancy formation energy E(N−1) − (N−1)/N·E(N) in a supercell of "
        "the relaxed BULK; with --migration the nearest-neighbour hop barrier by a "
        "climbing-image NEB (equipot's, or ASE's with --neb-engine ase). Writes defects.json "
        "(and neb.png).",
    )
    add_source_arguments(parser, "BULK")
    parser.add_argument(
        "--supercell", type=int, nargs=3, default=[2, 2, 2], metavar=("A", "B", "C")
    )
    parser.add_argument("--site", type=int, default=0, help="index of the removed atom")
    parser.add_argument("--fmax", type=float, default=1e-3, help="relaxation, eV/Å")
    parser.add_argument("--migration", action="store_true", help="also the migration barrier")
    parser.add_argument(
        "--images", type=int, default=None, help="--migration: NEB images (default 5)"
    )
    parser.add_argument(
        "--neb-engine", default=None, choices=["auto", "equipot", "ase"], help="--migration"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from equipot.cli.options import reject_unused, with_defaults
    from equipot.properties.defects import vacancy_formation_energy, vacancy_migration_barrier

    neb = (args.migration, "the migration barrier (--migration)")
    reject_unused(args, {"images": neb, "neb_engine": neb})
    with_defaults(args, {"images": 5, "neb_engine": "auto"})
    source, bulk, out = load_inputs(args)
    formation = vacancy_formation_energy(
        bulk, source, supercell=args.supercell, index=args.site, fmax=args.fmax
    )
    print(
        f"vacancy formation energy: {formation.energy:.4f} eV (unrelaxed "
        f"{formation.unrelaxed_energy:.4f} eV, {formation.n_atoms}-site supercell)"
    )
    data = {"units": "eV", "vacancy_formation": formation.as_dict()}
    if args.migration:
        migration = vacancy_migration_barrier(
            bulk,
            source,
            supercell=args.supercell,
            index=args.site,
            images=args.images,
            engine=args.neb_engine,
        )
        note = "" if migration.converged else " (NEB NOT converged)"
        print(f"vacancy migration barrier: {migration.barrier:.4f} eV ({migration.engine}){note}")
        data["vacancy_migration"] = migration.as_dict()
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.plot(range(len(migration.energies)), migration.energies, "o-")
        ax.set(xlabel="image", ylabel="E − E(initial) (eV)", title="vacancy hop (CI-NEB)")
        fig.tight_layout()
        fig.savefig(out / "neb.png", dpi=120)
        plt.close(fig)
    write_json(out / "defects.json", data)
    print(f"wrote {out}/defects.json")
    return 0
