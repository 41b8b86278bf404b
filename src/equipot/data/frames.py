"""One labelled structure (:class:`Frame`) and its validation.

Readers convert every file format into frames in equipot's units (Å, eV, eV/Å, eV/Å³) and
validate each one, so a bad value is reported with the file, the frame and the key instead of
surfacing later as a NaN loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols

# Beyond these magnitudes (equipot's units) a value is garbage, not physics: positions and
# cell vectors in Å, energy per atom in eV, forces in eV/Å, stress in eV/Å³.
LIMITS = {"positions": 1e6, "cell": 1e6, "energy": 1e7, "forces": 1e6, "stress": 1e6}
MAX_IMAGES = 20_000_000  # atoms × periodic images searched for neighbours in one frame


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
    per_frame_keys: tuple[str, ...] = ()  # what the source offered (for "key not found")
    per_atom_keys: tuple[str, ...] = ()
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


def validate_frame(frame: Frame, where: str, names: dict[str, str] | None = None) -> Frame:
    """Check shapes and finiteness; ``where`` ("file.xyz frame 3") prefixes every error and
    ``names`` (quantity → how to call it, e.g. "forces (key 'REF_f')") names the values."""
    names = names or {}
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
    pbc = np.asarray(frame.pbc)
    if pbc.size != 3 or pbc.dtype.kind not in "bui":
        raise ValueError(f"{where}: pbc must be three booleans, got {frame.pbc!r}")
    frame.pbc = pbc.astype(bool).reshape(3)
    energy = _numbers(frame.energy, where, names.get("energy", "energy"))
    if energy.size != 1:
        raise ValueError(f"{where}: energy must be one number, got shape {energy.shape}")
    if not np.isfinite(energy).all():
        raise ValueError(f"{where}: energy is not finite ({float(energy.reshape(-1)[0])})")
    frame.energy = float(energy.reshape(-1)[0])
    if frame.forces is not None:
        frame.forces = _array(frame.forces, (n, 3), where, names.get("forces", "forces"))
    if frame.stress is not None:
        label = names.get("stress", "stress")
        stress = _numbers(frame.stress, where, label)
        if stress.shape == (6,):
            stress = voigt_to_matrix(stress)
        elif stress.size == 9:
            stress = stress.reshape(3, 3)
        frame.stress = _array(stress, (3, 3), where, label)
        if not frame.pbc.all():
            raise ValueError(f"{where}: stress given for a structure not periodic in 3D")
    if frame.virial is not None:
        label = names.get("virial", "virial")
        virial = _numbers(frame.virial, where, label).reshape(-1)
        frame.virial = _array(virial, (9,), where, label).reshape(3, 3)
        if not frame.pbc.all():
            raise ValueError(f"{where}: virial given for a structure not periodic in 3D")
    weight = _numbers(frame.weight, where, "config weight")
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


def _numbers(value, where: str, key: str) -> np.ndarray:
    """``value`` as float64, refusing text, complex numbers and other non-numbers."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":  # not text, complex numbers, booleans or objects
        raise ValueError(f"{where}: {key} must be numbers, got {str(value)[:60]!r}")
    return array.astype(np.float64)


def _array(value, shape: tuple[int, ...], where: str, key: str) -> np.ndarray:
    array = _numbers(value, where, key)
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


def check_plausible(frame: Frame, where: str) -> None:
    """Refuse values no structure has (after conversion to equipot's units): a 1e308
    coordinate or energy is a broken file, and would overflow later."""
    values = {
        "positions": frame.positions,
        "cell": frame.cell,
        "energy": np.asarray(frame.energy) / frame.num_atoms,
        "forces": frame.forces,
        "stress": frame.stress,
    }
    for key, value in values.items():
        if value is None:
            continue
        big = np.abs(value) > LIMITS[key]
        if big.any():
            index = np.argwhere(big)[0].tolist()
            per = " per atom" if key == "energy" else ""
            raise ValueError(
                f"{where}: {key}{per} {float(np.asarray(value)[tuple(index)]):.3g} at {index} "
                f"exceeds {LIMITS[key]:g} in magnitude (eV, Å units): a broken value"
            )


def check_neighbour_density(frame: Frame, cutoff: float, where: str) -> None:
    """Refuse periodic cells so small that the neighbour search would need more than
    :data:`MAX_IMAGES` atom images (a cell in the wrong unit, e.g. nm read as Å)."""
    periodic = np.flatnonzero(frame.pbc)
    if not len(periodic):
        return
    cell = frame.cell
    volume = abs(float(np.linalg.det(cell))) if len(periodic) == 3 else None
    images = 1.0
    for k in periodic:
        a, b = cell[(k + 1) % 3], cell[(k + 2) % 3]
        area = float(np.linalg.norm(np.cross(a, b)))
        if volume:
            height = volume / area if area > 0 else 0.0
        else:
            height = float(np.linalg.norm(cell[k]))
        if not height > 1e-8:
            return  # degenerate: the neighbour search names it
        images *= 2 * math.ceil(cutoff / height) + 1
    if frame.num_atoms * images > MAX_IMAGES:
        raise ValueError(
            f"{where}: the periodic cell is far too small for the cutoff {cutoff} Å "
            f"({frame.num_atoms} atoms, {images:.3g} periodic images each; cell lengths "
            f"{np.round(np.linalg.norm(cell, axis=1), 4).tolist()} Å): check the Lattice units"
        )
