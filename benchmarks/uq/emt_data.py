"""EMT copper MD data for the uncertainty / active-learning benchmarks (issue 13).

    python benchmarks/uq/emt_data.py --out benchmarks/out/uq/emt      (≈ 5 min on 2 cores)

Langevin MD with ASE's EMT (equipot's integrators, one batched state per condition), frames
every 20 fs after 1 ps of equilibration, two independent runs (seeds) per condition so the
test frames come from trajectories no training frame came from:

    crystal-300/600/900   fcc bulk, 32 atoms, at 300 / 600 / 900 K
    slab-600              (111) slab, 2×2×4 = 16 atoms, 6 Å vacuum, 600 K
    vacancy-600           bulk with one vacancy, 31 atoms, 600 K
    liquid-2500           bulk melted at 2500 K (EMT Cu melts at ≈ 1,300 K; a 32-atom cell
                          superheats, so it is run hot to melt within the equilibration)

Writes ``<condition>-<run>.extxyz`` (energy, forces, stress for 3D-periodic cells).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from equipot.sim import langevin
from equipot.sim.potentials import ASEPotential
from equipot.sim.state import SimState

A = 3.61  # Å, EMT's fcc Cu lattice constant (to 0.01 Å)


def structures() -> dict:
    cube = bulk("Cu", "fcc", a=A, cubic=True) * (2, 2, 2)
    vacancy = cube.copy()
    del vacancy[5]
    slab = fcc111("Cu", size=(2, 2, 4), a=A, vacuum=6.0, periodic=True)
    slab.pbc = (True, True, False)
    slab.info = {}
    return {
        "crystal-300": (cube, 300.0),
        "crystal-600": (cube, 600.0),
        "crystal-900": (cube, 900.0),
        "slab-600": (slab, 600.0),
        "vacancy-600": (vacancy, 600.0),
        "liquid-2500": (cube, 2500.0),
    }


def run(
    atoms,
    temperature: float,
    frames: int,
    seed: int,
    every: int = 10,
    dt: float = 2.0,
    calculator=EMT,
    equilibration: int = 500,
):
    """Langevin MD with ``calculator()``; ``frames`` labelled frames every ``every`` steps."""
    potential = ASEPotential(calculator())
    state = SimState.from_atoms(atoms, temperature=temperature, seed=seed)
    state = langevin.init(state, potential, seed=seed)
    for _ in range(equilibration):
        state = langevin.step(state, potential, dt=dt, temperature=temperature, tau=100.0)
    out = []
    for _ in range(frames):
        for _ in range(every):
            state = langevin.step(state, potential, dt=dt, temperature=temperature, tau=100.0)
        frame = state.to_atoms()[0]
        frame.calc = calculator()
        results = {"energy": frame.get_potential_energy(), "forces": frame.get_forces()}
        if frame.pbc.all():
            results["stress"] = frame.get_stress()
        frame.calc = SinglePointCalculator(frame, **results)
        frame.set_momenta(None)
        out.append(frame)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/uq/emt"))
    p.add_argument("--frames", type=int, default=200, help="frames per run")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (atoms, temperature) in structures().items():
        for run_index in range(2):
            path = args.out / f"{name}-{run_index}.extxyz"
            if path.exists():
                continue
            start = time.perf_counter()
            frames = run(atoms, temperature, args.frames, seed=17 * run_index + len(name))
            for f in frames:
                f.info["config_type"] = name
            write(path, frames, format="extxyz")
            elapsed = time.perf_counter() - start
            print(f"{path}: {len(frames)} frames in {elapsed:.0f} s", flush=True)


if __name__ == "__main__":
    main()
