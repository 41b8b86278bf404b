"""Readers: extended XYZ, rMD17 ``.npz`` and ASE databases → validated :class:`Frame` s.

:class:`DataSource` names a file and how to read it (format, keys, units). Every reader is a
generator, so files larger than memory stream into the HDF5 cache (:mod:`equipot.data.cache`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from equipot.data.frames import Frame, check_plausible, validate_frame
from equipot.data.labels import LabelField, label_value
from equipot.data.units import energy_factor, force_factor, length_factor, stress_factor

NATIVE_ENERGY_UNIT = {"extxyz": "eV", "ase-db": "eV", "rmd17": "kcal/mol"}
SUFFIX_FORMAT = {".xyz": "extxyz", ".extxyz": "extxyz", ".npz": "rmd17", ".db": "ase-db"}


class DataSource(BaseModel):
    """A data file and how to read it.

    ``energy_key`` / ``forces_key`` / ``stress_key`` / ``virial_key`` / ``weight_key`` /
    ``config_type_key`` name the properties in extended XYZ (``info`` / per-atom arrays, or the
    calculator results ASE attaches for ``energy``, ``forces``, ``stress``) and in ASE
    databases (row attributes, key-value pairs or ``data``). A virial W (energy units) is used
    where a frame has no stress: σ = −W / V. Frames without a weight weigh 1, frames without
    a config type are "Default". rMD17 files always use ``energies`` / ``forces`` /
    ``coords`` / ``nuclear_charges``.
    Units default to the format's native ones (eV, Å; kcal/mol for rMD17); the force unit
    defaults to energy/length and the stress unit to energy/length³.
    ``labels`` names tensor labels to read (dipoles, polarisabilities, Born charges…; see
    :mod:`equipot.data.labels`); training fills in those its model's heads need.
    """

    model_config = ConfigDict(extra="forbid")

    path: Path
    format: Literal["auto", "extxyz", "rmd17", "ase-db"] = "auto"
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virial_key: str = "virial"
    weight_key: str = "config_weight"
    config_type_key: str = "config_type"
    # total charge of a structure (e), the first of these keys present; absent: neutral
    charge_keys: list[str] = Field(default_factory=lambda: ["charge", "total_charge"])
    energy_unit: str | None = None
    length_unit: str = "Å"
    force_unit: str | None = None
    stress_unit: str | None = None
    labels: dict[str, LabelField] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value):
        return {"path": value} if isinstance(value, (str, Path)) else value

    @model_validator(mode="after")
    def _check_units(self) -> DataSource:
        self.factors()  # unknown unit names fail when the config is loaded
        return self

    def resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        fmt = SUFFIX_FORMAT.get(self.path.suffix.lower())
        if fmt is None:
            raise ValueError(
                f"{self.path}: cannot tell the format from the suffix {self.path.suffix!r}; "
                f"set format to one of extxyz, rmd17, ase-db"
            )
        return fmt

    def factors(self) -> dict[str, float]:
        """Multipliers to eV, Å, eV/Å, eV/Å³ for this file's values."""
        energy = self.energy_unit or NATIVE_ENERGY_UNIT.get(self.resolved_format(), "eV")
        return {
            "energy": energy_factor(energy),
            "length": length_factor(self.length_unit),
            "forces": force_factor(self.force_unit or f"{energy}/{self.length_unit}"),
            "stress": stress_factor(self.stress_unit or f"{energy}/{self.length_unit}^3"),
        }


def read_frames(source: DataSource) -> Iterator[Frame]:
    """Yield the validated frames of ``source`` in equipot's units."""
    path = source.path
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    reader = {"extxyz": _read_extxyz, "rmd17": _read_rmd17, "ase-db": _read_ase_db}
    f = source.factors()
    defaults = DataSource.model_fields
    names = {
        quantity: quantity
        if getattr(source, f"{quantity}_key") == defaults[f"{quantity}_key"].default
        else f"{quantity} (key {getattr(source, f'{quantity}_key')!r})"
        for quantity in ("energy", "forces", "stress", "virial")
    }
    for k, frame in enumerate(reader[source.resolved_format()](source)):
        where = f"{path} frame {k}"
        frame = validate_frame(frame, where, names)
        frame.positions = frame.positions * f["length"]
        frame.cell = frame.cell * f["length"]
        frame.energy = frame.energy * f["energy"]
        if frame.forces is not None:
            frame.forces = frame.forces * f["forces"]
        if frame.stress is not None:
            frame.stress = frame.stress * f["stress"]
        if frame.virial is not None:  # σ = −W / V in eV/Å³
            volume = abs(np.linalg.det(frame.cell))
            if not volume > 0:
                raise ValueError(f"{where}: virial given for a cell of zero volume")
            frame.stress, frame.virial = -frame.virial * f["energy"] / volume, None
        check_plausible(frame, where)
        yield frame


def _read_rmd17(source: DataSource) -> Iterator[Frame]:
    from equipot.data.npz import read_rmd17_arrays

    data = read_rmd17_arrays(source.path)
    numbers = data["nuclear_charges"].astype(np.int64)
    coords, energies, forces = data["coords"], data["energies"], data.get("forces")
    per_atom = tuple(k for k in ("coords", "forces") if k in data)
    for k in range(len(coords)):
        yield Frame(
            numbers=numbers,
            positions=coords[k],
            cell=np.zeros((3, 3)),
            pbc=np.zeros(3, dtype=bool),
            energy=energies[k],
            forces=None if forces is None else forces[k],
            per_frame_keys=("energies",),
            per_atom_keys=per_atom,
        )


def _get(atoms, key: str, where: str, required: bool, extra: dict | None = None):
    """A property from ``info``, ``arrays``, the attached results or ``extra`` (db rows)."""
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    results = getattr(atoms.calc, "results", None) or {}
    if key in results:
        return results[key]
    if extra and key in extra:
        return extra[key]
    if required:
        per_frame, per_atom = available_keys(atoms, extra)
        raise ValueError(
            f"{where}: no energy (key {key!r} not found; per-frame keys: {list(per_frame)}, "
            f"per-atom keys: {list(per_atom)})"
        )
    return None


def available_keys(atoms, extra: dict | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(per-frame, per-atom) property names of an Atoms object (+ db row extras)."""
    results = dict(getattr(atoms.calc, "results", None) or {})
    candidates = {**atoms.info, **results, **(extra or {})}
    per_atom = {k for k in atoms.arrays if k not in ("numbers", "positions")}
    per_frame = set()
    for k, value in candidates.items():
        shape = np.shape(value) if isinstance(value, (list, tuple, np.ndarray)) else ()
        (per_atom if shape[:1] == (len(atoms),) and len(shape) == 2 else per_frame).add(str(k))
    return tuple(sorted(per_frame)), tuple(sorted(per_atom))


def _atoms_to_frame(atoms, source: DataSource, where: str, extra: dict | None = None) -> Frame:
    stress = _get(atoms, source.stress_key, where, False, extra)
    virial = None if stress is not None else _get(atoms, source.virial_key, where, False, extra)
    weight = _get(atoms, source.weight_key, where, False, extra)
    config_type = _get(atoms, source.config_type_key, where, False, extra)
    per_frame, per_atom = available_keys(atoms, extra)
    charges = [_get(atoms, key, where, False, extra) for key in source.charge_keys]
    charge = next((c for c in charges if c is not None), 0.0)
    return Frame(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        energy=_get(atoms, source.energy_key, where, True, extra),
        forces=_get(atoms, source.forces_key, where, False, extra),
        stress=stress,
        virial=virial,
        weight=1.0 if weight is None else weight,
        config_type="Default" if config_type is None else config_type,
        per_frame_keys=per_frame,
        per_atom_keys=per_atom,
        charge=charge,
        labels=_labels(atoms, source, where, extra),
    )


def _labels(atoms, source: DataSource, where: str, extra: dict | None) -> dict:
    out = {}
    for name, spec in source.labels.items():
        value = _get(atoms, spec.file_key(name), where, False, extra)
        if value is not None:
            out[name] = label_value(value, spec, name, len(atoms), where)
    return out


def _read_extxyz(source: DataSource) -> Iterator[Frame]:
    from equipot.data.extxyz import read_extxyz_frames

    for where, atoms in read_extxyz_frames(source.path):
        yield _atoms_to_frame(atoms, source, where)


def _read_ase_db(source: DataSource) -> Iterator[Frame]:
    import ase.db

    k, where = 0, f"{source.path}"
    try:
        with ase.db.connect(str(source.path), type="db") as db:
            for k, row in enumerate(db.select()):
                where = f"{source.path} frame {k} (row id {row.id})"
                extra = dict(row.key_value_pairs)
                extra.update(row.get("data", {}) or {})
                for key in ("energy", "forces", "stress"):
                    if row.get(key) is not None:
                        extra[key] = row.get(key)
                yield _atoms_to_frame(row.toatoms(), source, where, extra)
    except ValueError:
        raise
    except Exception as exc:  # sqlite3 / JSON / ASE errors on damaged databases
        reason = " ".join(str(exc).split())[:200]
        raise ValueError(
            f"{where}: not a readable ASE database ({type(exc).__name__}: {reason})"
        ) from None
