"""Exploration: batched MD replicas with the round's model, alarms on, frames as candidates.

Replicas with the same temperature / pressure / length run as one batched MD (every starting
structure a system of one state: one model call per step for all); NVT uses Langevin, a
pressure NPT (stochastic cell rescaling, 3D-periodic structures only). Candidates are the
snapshots every ``snapshot_every`` steps and the frames the alarms wrote; frames with atoms
closer than ``min_distance`` (a run that went unphysical) are left out.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

from equipot.learn.config import ExploreConfig
from equipot.persist import atomic_write
from equipot.sim.runner import run as run_md
from equipot.sim.state import SimState
from equipot.sim.uncertain import Alarm, UncertainPotential


def _too_close(atoms: Atoms, limit: float) -> bool:
    if limit <= 0 or len(atoms) < 2:
        return False
    from ase.neighborlist import neighbor_list

    return len(neighbor_list("i", atoms, limit)) > 0


def explore(
    model: Path,
    structures: list[Atoms],
    config: ExploreConfig,
    out_dir: Path,
    *,
    seed: int,
    progress: bool = False,
) -> list[Atoms]:
    """Run the replicas of ``config`` from ``structures``; the candidates (module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple, int] = {}
    for replica in config.replicas:
        groups.setdefault((replica.temperature, replica.pressure, replica.steps), len(groups))
    candidates = []
    for (temperature, pressure, steps), g in groups.items():
        if pressure is not None and not all(a.pbc.all() for a in structures):
            raise ValueError("an NPT replica (pressure set) needs 3D-periodic structures")
        potential = UncertainPotential(model)
        state = SimState.from_atoms(structures, temperature=temperature, seed=seed + g)
        trajectory = out_dir / f"replica-{g}.extxyz"
        alarm = None
        if config.max_force_radius is not None or config.max_latent_distance is not None:
            alarm = Alarm(
                max_force_radius=config.max_force_radius,
                max_latent_distance=config.max_latent_distance,
                action=config.on_alarm,
                path=out_dir / f"replica-{g}.alarms.extxyz",
                min_gap=config.snapshot_every,
            )
            if alarm.path.exists():
                alarm.path.unlink()
        run_md(
            state,
            potential,
            ensemble="nvt" if pressure is None else "npt",
            dt=config.timestep,
            steps=steps,
            temperature=temperature,
            pressure=0.0 if pressure is None else pressure,
            tau=config.tau,
            seed=seed + 100 + g,
            trajectory=trajectory,
            thermo=out_dir / f"replica-{g}.csv",
            write_every=config.snapshot_every,
            log_every=config.snapshot_every,
            progress=progress,
            alarm=alarm,
        )
        frames = [a for a in read(trajectory, index=":") if a.info.get("step", 0) > 0]
        if alarm is not None and alarm.path.exists():
            frames += read(alarm.path, index=":")
        for atoms in frames:
            if _too_close(atoms, config.min_distance):
                continue
            tag = f"g{g}-s{atoms.info.get('system', 0)}-t{atoms.info.get('step', 0)}"
            if atoms.info.get("alarm"):
                tag += "-alarm"
            atoms.info.update(candidate=tag, temperature_K=temperature)
            atoms.calc = None
            for key in list(atoms.arrays):
                if key not in ("numbers", "positions"):
                    del atoms.arrays[key]
            candidates.append(atoms)
    return candidates


def write_atomically(path: Path, frames: list[Atoms]) -> None:
    """All of ``frames`` or (killed meanwhile) nothing in ``path`` (equipot.persist)."""
    buffer = io.StringIO()
    write(buffer, frames, format="extxyz")
    atomic_write(path, buffer.getvalue())


def pool_candidates(pool: Path, taken: set[str]) -> list[Atoms]:
    """The frames of an unlabelled pool not selected before (ids ``pool-<index>``)."""
    frames = read(pool, index=":")
    out = []
    for k, atoms in enumerate(frames):
        tag = f"pool-{k}"
        if tag in taken:
            continue
        atoms = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        atoms.info["candidate"] = tag
        out.append(atoms)
    return out


def rattled_copies(structures: list[Atoms], count: int, amplitude: float, seed: int):
    """``count`` structures cycled from ``structures``, positions rattled (round 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        atoms = structures[k % len(structures)].copy()
        atoms.calc = None
        atoms.positions += rng.normal(0.0, amplitude, atoms.positions.shape)
        out.append(atoms)
    return out
