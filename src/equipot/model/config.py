"""The model's typed, validated configuration (stored inside every model file)."""

from __future__ import annotations

from typing import Any, Literal

from ase.data import atomic_numbers as ASE_ATOMIC_NUMBERS
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from equipot.model.heads.config import HeadConfig, resolve_head
from equipot.model.long_range import LongRangeConfig

# 2: no coordination term by default (shift = 0), ZBL repulsion on by default. Files of
# schema 1 load with their shift and without repulsion, so they give the same energies.
# 3: latent charges take the excess charge back by learned weights (long_range.excess_charge);
# files of schema ≤ 2 keep the uniform correction they were trained with.
# 4: optional radial floor (radial_floor); files without one evaluate as before.
# 5: optional feature ceiling (feature_ceiling); files without one evaluate as before.
MODEL_SCHEMA_VERSION = 5


class Repulsion(BaseModel):
    """Screened nuclear repulsion between close atoms (the ZBL universal potential), switched
    off smoothly between ``inner`` and ``outer`` × (R_i + R_j), with R the covalent radii or,
    where ``radii`` are given, those per-element switch radii (Å): it acts only where atoms are
    closer than anything the training set contains (see model/terms/zbl.py).

    Without ``radii`` the switch is the fixed covalent fraction (0.5–0.75 × covalent sum by
    default; the training default, with the radial floor holding the network between it and
    the data). ``model.repulsion.switch: data`` in training sets ``radii`` from the shortest
    distance of each element pair in the training data, so that the wall starts where the
    data end."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["zbl"] = "zbl"
    inner: float = Field(0.5, gt=0.0, description="full repulsion below, × (R_i + R_j)")
    outer: float = Field(0.75, gt=0.0, description="no repulsion beyond, × (R_i + R_j)")
    radii: dict[str, float] | None = Field(
        None,
        description="per-element switch radii R (Å) instead of the covalent radii (elements "
        "left out, e.g. added by fine-tuning, keep their covalent radius)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Repulsion:
        if self.inner >= self.outer:
            raise ValueError(f"repulsion inner={self.inner} must be below outer={self.outer}")
        bad = {e: r for e, r in (self.radii or {}).items() if not r > 0.0}
        if bad:
            raise ValueError(f"repulsion radii must be positive, got {bad}")
        return self


class ModelConfig(BaseModel):
    """Architecture and energy normalisation of an equipot model.

    The atomic energy is ``E_i = E0[z_i] + scale · Σ_t y_i^(t) + Σ_terms E_i^term`` with
    y^(t) the readout of layer t; the terms (``model/terms/``: the ZBL ``repulsion``, ...) are
    fixed physical contributions. With ``saturation`` = c the network part ε_i = scale · Σ_t
    y_i^(t) enters as c·tanh(ε_i/c) (:func:`equipot.model.saturation.saturate`): no atom's
    many-body energy leaves [−c, c], however far a structure is from the data. Every part
    vanishes for an isolated atom, whose energy is therefore exactly its E0; with E0 from
    isolated-atom references, atoms pulled apart go smoothly (C², through the cutoff
    envelope) to Σ E0.

    With ``radial_floor`` the network reads each edge no shorter than the floor of its element
    pair (:mod:`equipot.nn.radial_floor`; training sets it just below the data's shortest
    distances): below the data the network is held and the ZBL term alone gives the slope.

    ``shift`` is the coefficient of a smooth coordination ``ρ_i = Σ_j u(r_ij) /
    avg_num_neighbors`` (u: the cutoff envelope) added to E_i by models of schema 1. It is 0 by
    default and no longer set from statistics: a term linear in the neighbour count extrapolates
    linearly where the training data do not constrain it (a folding molecule gains neighbours
    and falls into a hole).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: int = MODEL_SCHEMA_VERSION
    elements: list[str] = Field(min_length=1)
    r_max: float = Field(5.0, gt=0.0, description="cutoff radius, Å")
    l_max: int = Field(2, ge=1, le=3, description="degree of spherical harmonics and of A")
    hidden_l_max: int | None = Field(
        None, ge=0, le=3, description="degree of features between layers (default min(1, l_max))"
    )
    channels: int = Field(32, ge=1)
    num_layers: int = Field(2, ge=1)
    correlation: int = Field(3, ge=1, le=4)
    num_radial: int = Field(8, ge=1)
    radial_hidden: list[int] = Field(default_factory=lambda: [64, 64, 64])
    envelope_exponent: int = Field(6, ge=2)
    readout_hidden: int = Field(16, ge=1)
    parity: bool = Field(True, description="O(3) (True) or SO(3)-only (False) equivariance")
    avg_num_neighbors: float = Field(10.0, gt=0.0)
    e0: dict[str, float] = Field(default_factory=dict, description="isolated-atom energies, eV")
    scale: float = 1.0
    shift: float = 0.0
    repulsion: Repulsion | None = Field(default_factory=Repulsion)
    saturation: float | None = Field(
        None,
        gt=0.0,
        description="bound c (eV) of each atom's network energy: ε → c·tanh(ε/c); None: off",
    )
    radial_floor: dict[str, float] | None = Field(
        None,
        description="per element pair 'A-B' (Å): the shortest distance the network's radial "
        "functions read (equipot.nn.radial_floor); training sets the training data's shortest "
        "distances; None: none",
    )
    radial_floor_softness: float = Field(
        0.1, gt=0.0, lt=1.0, description="δ/f: how far below its floor f the network may read"
    )
    feature_ceiling: list[list[list[float]]] | None = Field(
        None,
        description="per layer, degree l and channel: the largest norm of the aggregated "
        "messages A on the training set (equipot.nn.feature_ceiling; measured after training); "
        "None: none",
    )
    feature_ceiling_softness: float = Field(
        1.0, gt=0.0, description="δ/m: how far above its ceiling m a block's norm may go"
    )
    heads: dict[str, HeadConfig] = Field(
        default_factory=dict, description="tensor output heads (equipot.model.heads)"
    )
    long_range: LongRangeConfig | None = Field(
        None, description="electrostatics with learned charges (equipot.model.long_range)"
    )

    @model_validator(mode="before")
    @classmethod
    def _older_schemas(cls, data: Any) -> Any:
        """Files of older schemas keep the energy function they were written with."""
        if not isinstance(data, dict):
            return data
        version = int(data.get("schema_version", MODEL_SCHEMA_VERSION))
        if version < 2:
            data = {"repulsion": None, **data}
        long_range = data.get("long_range")
        if version < 3 and isinstance(long_range, dict):
            data = {**data, "long_range": {"excess_charge": "uniform", **long_range}}
        return data

    @field_validator("elements")
    @classmethod
    def _known_elements(cls, elements: list[str]) -> list[str]:
        unknown = [e for e in elements if e not in ASE_ATOMIC_NUMBERS or e == "X"]
        if unknown:
            raise ValueError(f"unknown chemical element symbol(s): {unknown}")
        if len(set(elements)) != len(elements):
            raise ValueError(f"elements listed twice: {elements}")
        return sorted(elements, key=lambda e: ASE_ATOMIC_NUMBERS[e])

    @field_validator("heads", mode="before")
    @classmethod
    def _resolve_heads(cls, heads):
        if not isinstance(heads, dict):
            raise ValueError("heads must map names to head options")
        reserved = {"energy", "forces", "stress", "charges", "energies", "free_energy"}
        clash = sorted(reserved & set(heads))
        if clash:
            raise ValueError(f"head names {clash} are reserved for other outputs")
        return {name: resolve_head(name, value) for name, value in heads.items()}

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.hidden_l_max is not None and self.hidden_l_max > self.l_max:
            raise ValueError(f"hidden_l_max={self.hidden_l_max} exceeds l_max={self.l_max}")
        stray = set(self.e0) - set(self.elements)
        if stray:
            raise ValueError(f"e0 given for elements not in the model: {sorted(stray)}")
        for key, value in (self.radial_floor or {}).items():
            pair = key.split("-", 1)
            if len(pair) != 2 or not set(pair) <= set(self.elements):
                raise ValueError(
                    f"radial_floor key {key!r} must be 'A-B' with A, B among {self.elements}"
                )
            if not 0.0 < value < self.r_max:
                raise ValueError(f"radial_floor {key} = {value} Å must lie in (0, r_max)")
        if self.feature_ceiling is not None:
            self._check_ceiling(self.feature_ceiling)
        return self

    def _check_ceiling(self, tops: list) -> None:
        """Shapes and values; the number of degrees per layer is checked by the model."""
        widths = {len(row) for m in tops for row in m}
        if len(tops) != self.num_layers or widths != {self.channels} or any(not m for m in tops):
            raise ValueError(
                f"feature_ceiling must hold, per layer ({self.num_layers}), one row of "
                f"{self.channels} norms per degree; got {len(tops)} layers, row widths "
                f"{sorted(widths)}"
            )
        if any(not v >= 0.0 for m in tops for row in m for v in row):
            raise ValueError("feature_ceiling norms must be non-negative numbers")

    @property
    def feature_l_max(self) -> int:
        return min(1, self.l_max) if self.hidden_l_max is None else self.hidden_l_max

    @property
    def atomic_numbers(self) -> list[int]:
        return [ASE_ATOMIC_NUMBERS[e] for e in self.elements]
