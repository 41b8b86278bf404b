"""Benchmark neighbour-list construction on rattled fcc Cu.

Times the median wall time of: equipot's "cells" (numpy) and "auto" (vesin) backends, raw
vesin (full list, unsorted and with its own ``sorted=True``), ASE's ``neighbor_list`` and
matscipy (when importable), at r_c = 5 Å for 4,000 and 32,000 atoms. ASE runs at 32,000
atoms only with ``--ase-large``. Pair counts must agree across methods.
Prints a markdown table and writes ``benchmarks/out/neighbors.json``.

    python benchmarks/neighbors.py [--threads 2] [--repeats 5] [--ase-large]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "neighbors.json"
CUTOFF = 5.0
LATTICE = 3.61
RATTLE = 0.05
SIZES = {4_000: 10, 32_000: 20}  # atoms -> repetitions of the 4-atom cubic cell


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for vesin (OpenMP)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    parser.add_argument(
        "--ase-large", action="store_true", help="also time ASE at 32,000 atoms (slow)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="JSON output path")
    return parser.parse_args()


def median_time(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Median wall time in seconds (after one warm-up call) and the pair count."""
    n_pairs = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), n_pairs


def build_methods(atoms, args: argparse.Namespace, libs: dict) -> dict[str, Callable[[], int]]:
    """Closures computing the full ijS list for ``atoms`` and returning the pair count."""
    pos, cell, pbc = atoms.positions, atoms.cell.array, atoms.pbc
    neighbor_list = libs["equipot"]

    def ours(backend: str) -> Callable[[], int]:
        return lambda: len(neighbor_list(pos, cell, pbc, CUTOFF, backend=backend)[0])

    methods = {"equipot cells": ours("cells")}
    if "vesin" in libs:
        methods["equipot auto (vesin)"] = ours("auto")
        for label, sort in (("unsorted", False), ("sorted=True", True)):
            calc = libs["vesin"].NeighborList(
                cutoff=CUTOFF, full_list=True, sorted=sort, n_threads=args.threads
            )
            methods[f"vesin (raw, {label})"] = lambda calc=calc: len(
                calc.compute(points=pos, box=cell, periodic=pbc, quantities="ijS")[0]
            )
    if "matscipy" in libs:
        methods["matscipy"] = lambda: len(libs["matscipy"]("ijS", atoms, CUTOFF)[0])
    if len(atoms) <= 4_000 or args.ase_large:
        methods["ase"] = lambda: len(libs["ase"]("ijS", atoms, CUTOFF)[0])
    return methods


def main() -> int:
    args = parse_args()
    # Before importing anything that may start an OpenMP runtime.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import numpy as np
    from ase.build import bulk
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    try:
        from equipot.geometry import neighbor_list
    except ImportError:  # running from a source checkout without installing
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from equipot.geometry import neighbor_list

    libs = {"equipot": neighbor_list, "ase": ase_neighbor_list}
    try:
        import vesin

        libs["vesin"] = vesin
    except ImportError:
        vesin = None
    try:
        from matscipy.neighbours import neighbour_list

        libs["matscipy"] = neighbour_list
    except ImportError:
        pass

    rows = []
    for n_atoms, reps in SIZES.items():
        atoms = bulk("Cu", "fcc", a=LATTICE, cubic=True).repeat((reps, reps, reps))
        atoms.rattle(RATTLE, seed=42)
        assert len(atoms) == n_atoms
        methods = build_methods(atoms, args, libs)

        counts = {}
        for name, fn in methods.items():
            repeats = 1 if name == "ase" and n_atoms > 4_000 else args.repeats
            seconds, counts[name] = median_time(fn, repeats)
            rows.append(
                {
                    "method": name,
                    "n_atoms": n_atoms,
                    "median_ms": seconds * 1e3,
                    "n_pairs": counts[name],
                    "repeats": repeats,
                }
            )
            print(f"  {n_atoms:>6} atoms  {name:<22} {seconds * 1e3:9.1f} ms", file=sys.stderr)
        if len(set(counts.values())) != 1:
            raise SystemExit(f"pair counts disagree at {n_atoms} atoms: {counts}")

    reference = {
        r["n_atoms"]: r["median_ms"] for r in rows if r["method"] == "vesin (raw, unsorted)"
    }
    print(
        f"\nNeighbour lists, rattled fcc Cu (a = {LATTICE} Å, rattle {RATTLE} Å), "
        f"r_c = {CUTOFF} Å, {args.threads} threads, median of {args.repeats}\n"
    )
    print("| method | atoms | pairs | median time (ms) | vs raw vesin |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["median_ms"] / reference[r["n_atoms"]] if reference else float("nan")
        print(
            f"| {r['method']} | {r['n_atoms']:,} | {r['n_pairs']:,} | "
            f"{r['median_ms']:.1f} | {ratio:.2f}x |"
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "cutoff": CUTOFF,
        "lattice": LATTICE,
        "rattle": RATTLE,
        "threads": args.threads,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "vesin": getattr(vesin, "__version__", None),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
