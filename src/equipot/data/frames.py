"""One labelled structure (:class:`Frame`) and its validation.

Readers convert every file format into frames in equipot's units (Å, eV, eV/Å, eV/Å³) and
validate each one, so a bad value is reported with the file, the frame and the key instead of
surfacing later as a NaN loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols


@dataclass
class Frame:
    numbers: np.ndarray  # (N,) atomic numbers
    positions: np.ndarray  # (N, 3) Å
    cell: np.ndarray  # (3, 3) Å, rows are lattice vectors (zeros along open directions)
    pbc: np.ndarray  # (3,) bool
    energy: float  # eV
    forces: np.ndarray | None = None  # (N, 3) eV/Å
    stress: np.ndarray | None = None  # (3, 3) eV/Å³, ASE's sign
    weight: float = 1.0  # per-config weight in the loss
    virial: np.ndarray | None = None  # (3, 3) as read; readers turn it into stress = −W/V
    config_type: str = "Default"
    charge: float = 0.0  # total charge, e
    # tensor labels (data/labels.py): name → (3^rank,) per structure or (N, 3^rank) per atom
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_atoms(self) -> int:
        return len(self.numbers)


def voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    """ASE's Voigt order (xx, yy, zz, yz, xz, xy) → symmetric 3×3."""
    xx, yy, zz, yz, xz, xy = stress
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def validate_frame(frame: Frame, where: str) -> Frame:
    """Check shapes and finiteness; ``where`` ("file.xyz frame 3") prefixes every error."""
    n = len(frame.numbers)
    if n == 0:
        raise ValueError(f"{where}: the structure has no atoms")
    frame.numbers = np.asarray(frame.numbers, dtype=np.int64).reshape(-1)
    bad = np.flatnonzero((frame.numbers < 1) | (frame.numbers > 118))
    if bad.size:
        raise ValueError(
            f"{where}: atom {bad[0]} has invalid atomic number {frame.numbers[bad[0]]}"
        )
    frame.positions = _array(frame.positions, (n, 3), where, "positions")
    frame.cell = _array(frame.cell, (3, 3), where, "cell")
    frame.pbc = np.asarray(frame.pbc, dtype=bool).reshape(3)
    energy = np.asarray(frame.energy, dtype=np.float64)
    if energy.size != 1:
        raise ValueError(f"{where}: energy must be one number, got shape {energy.shape}")
    if not np.isfinite(energy).all():
        raise ValueError(f"{where}: energy is not finite ({float(energy.reshape(-1)[0])})")
    frame.energy = float(energy.reshape(-1)[0])
    if frame.forces is not None:
        frame.forces = _array(frame.forces, (n, 3), where, "forces")
    if frame.stress is not None:
        stress = np.asarray(frame.stress, dtype=np.float64)
        if stress.shape == (6,):
            stress = voigt_to_matrix(stress)
        elif stress.size == 9:
            stress = stress.reshape(3, 3)
        frame.stress = _array(stress, (3, 3), where, "stress")
        if not frame.pbc.all():
            raise ValueError(f"{where}: stress given for a structure not periodic in 3D")
    if frame.virial is not None:
        frame.virial = _array(np.reshape(frame.virial, -1), (9,), where, "virial").reshape(3, 3)
        if not frame.pbc.all():
            raise ValueError(f"{where}: virial given for a structure not periodic in 3D")
    weight = np.asarray(frame.weight, dtype=np.float64)
    if weight.size != 1 or not np.isfinite(weight).all() or float(weight.reshape(-1)[0]) < 0:
        raise ValueError(
            f"{where}: config weight must be one finite number ≥ 0, got {frame.weight}"
        )
    frame.weight = float(weight.reshape(-1)[0])
    frame.config_type = str(frame.config_type)
    try:
        charge = np.asarray(frame.charge, dtype=np.float64)
    except (TypeError, ValueError):
        charge = np.array([np.nan, np.nan])
    if charge.size != 1 or not np.isfinite(charge).all():
        raise ValueError(f"{where}: total charge must be one finite number, got {frame.charge!r}")
    frame.charge = float(charge.reshape(-1)[0])
    return frame


def _array(value, shape: tuple[int, ...], where: str, key: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{where}: {key} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        index = np.argwhere(~np.isfinite(array))[0].tolist()
        raise ValueError(f"{where}: {key} has a non-finite value (NaN or inf) at {index}")
    return array


def check_elements(numbers: np.ndarray, elements: list[str], where: str) -> None:
    """Raise naming the first atom whose element is not in ``elements``."""
    allowed = np.zeros(119, dtype=bool)
    allowed[[chemical_symbols.index(e) for e in elements]] = True
    bad = np.flatnonzero(~allowed[numbers])
    if bad.size:
        symbol = chemical_symbols[int(numbers[bad[0]])]
        raise ValueError(f"{where}: element {symbol} is not in the configured elements {elements}")
