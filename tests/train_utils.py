"""Tiny EMT data sets and training configs shared by the data / training / CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write


def emt_frames(n: int = 12, seed: int = 0, elements=("Cu", "Al")) -> list:
    """Rattled, strained 4-atom fcc cells (random Cu/Al occupation) labelled with EMT."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
        atoms.symbols = rng.choice(list(elements), size=len(atoms))
        strain = np.eye(3) + 0.02 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


def write_emt(path: Path, n: int = 12, seed: int = 0, elements=("Cu", "Al")) -> Path:
    write(path, emt_frames(n, seed, elements), format="extxyz")
    return path


def tiny_config(train: Path, out: Path, **sections) -> dict:
    """A training config for a tiny model (seconds per epoch)."""
    config = {
        "seed": 1,
        "dtype": "float64",
        "data": {"train": str(train), "valid_count": 3},
        "model": {
            "r_max": 3.0,
            "l_max": 1,
            "channels": 8,
            "radial_hidden": [16, 16],
            "correlation": 2,
        },
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 10.0},
        "optim": {"lr": 0.01, "batch_size": 3, "valid_batch_size": 4, "max_epochs": 2},
        "output": {"dir": str(out), "progress": False, "plot": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config
