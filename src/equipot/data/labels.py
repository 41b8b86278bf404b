"""Tensor labels beyond energy, forces and stress (dipoles, polarisabilities, Born charges…).

A label is named after the model output it trains: a head's name (``dipole``,
``polarizability``, ``bec``, any tensor head), or ``bec`` for the Born charges ∂μ/∂r of a
``dipole`` head when the model has no ``bec`` head. It is read from the file key ``key``
(default: its name) — an ``info`` entry / ASE calculator result for per-system labels, a
per-atom array for per-atom ones — flattened to 3^rank numbers and converted to equipot's
units with ``unit``:

    dipole          e·Å (default) | Debye | e*Bohr
    polarizability  e·Å²/V (default) | Å^3 | Bohr^3   (volume polarisabilities α/(4πε₀))
    bec / charges   e
    other heads     a number: the factor to equipot's units (default 1)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from ase import units
from pydantic import BaseModel, ConfigDict, Field

_EPSILON_0 = units._eps0 / units._e * 1e-10  # e/(V·Å)
_BOHR = units.Bohr
UNITS = {
    "dipole": {"e*Å": 1.0, "e*A": 1.0, "Debye": units.Debye, "D": units.Debye, "e*Bohr": _BOHR},
    "polarizability": {
        "e*Å^2/V": 1.0,
        "e*A^2/V": 1.0,
        "Å^3": 4 * np.pi * _EPSILON_0,
        "A^3": 4 * np.pi * _EPSILON_0,
        "Bohr^3": 4 * np.pi * _EPSILON_0 * _BOHR**3,
    },
    "bec": {"e": 1.0},
    "charges": {"e": 1.0},
}


class LabelField(BaseModel):
    """How one label is stored in a data file (``DataSource.labels``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per: Literal["system", "atom"] = "system"
    rank: int = Field(1, ge=0, le=4)
    key: str | None = None  # default: the label's name
    unit: str | float | None = None  # default: equipot's unit (module docstring)

    def file_key(self, name: str) -> str:
        return self.key or name

    @property
    def size(self) -> int:
        return 3**self.rank

    def factor(self, name: str) -> float:
        if self.unit is None:
            return 1.0
        if isinstance(self.unit, (int, float)):
            return float(self.unit)
        table = UNITS.get(name)
        if table is None:
            raise ValueError(
                f"label {name!r}: unit {self.unit!r} unknown; give the factor to equipot's "
                "units as a number"
            )
        for unit, value in table.items():
            if unit.lower() == str(self.unit).replace(" ", "").lower():
                return value
        raise ValueError(f"label {name!r}: unknown unit {self.unit!r}; known: {', '.join(table)}")


def label_value(value, field: LabelField, name: str, num_atoms: int, where: str) -> np.ndarray:
    """The label as (3^rank,) or (N, 3^rank) float64 in equipot's units, or an error naming
    the file, frame and key."""
    key = field.file_key(name)
    array = np.asarray(value, dtype=np.float64)
    shape = (num_atoms, field.size) if field.per == "atom" else (field.size,)
    if array.size != int(np.prod(shape)):
        raise ValueError(
            f"{where}: {key} has shape {array.shape}, expected {field.size} numbers "
            f"{'per atom' if field.per == 'atom' else 'per structure'} (a rank-{field.rank} tensor)"
        )
    array = array.reshape(shape)
    if not np.isfinite(array).all():
        index = np.argwhere(~np.isfinite(array))[0].tolist()
        raise ValueError(f"{where}: {key} has a non-finite value (NaN or inf) at {index}")
    return array * field.factor(name)


# the charges of a long-range model (equipot.model.long_range) and their dipole Σ_i q_i r_i
LONG_RANGE_LABELS = {
    "charges": LabelField(per="atom", rank=0),
    "dipole": LabelField(per="system", rank=1),
}


def labels_for_model(heads: dict, bec_weight: float = 0.0) -> dict[str, LabelField]:
    """The labels a model with these heads (name → HeadConfig) can be trained on."""
    from equipot.model.heads.cartesian import cartesian_basis

    out = {}
    for name, head in heads.items():
        rank = cartesian_basis(head.tensor, head.pseudo).rank
        out[name] = LabelField(per=head.per, rank=rank)
    if "bec" not in heads and "dipole" in heads and bec_weight > 0:
        out["bec"] = LabelField(per="atom", rank=2)
    return out
