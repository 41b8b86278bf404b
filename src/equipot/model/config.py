"""The model's typed, validated configuration (stored inside every model file)."""

from __future__ import annotations

from ase.data import atomic_numbers as ASE_ATOMIC_NUMBERS
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_SCHEMA_VERSION = 1


class ModelConfig(BaseModel):
    """Architecture and energy normalisation of an equipot model.

    The atomic energy is ``E_i = E0[z_i] + scale · Σ_t y_i^(t) + shift · ρ_i`` with y^(t) the
    readout of layer t and ``ρ_i = Σ_j u(r_ij) / avg_num_neighbors`` a smooth coordination
    (u: the cutoff envelope). ρ vanishes for an isolated atom, whose energy is therefore exactly
    its E0, while ``shift`` still carries the mean interaction energy per atom.
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

    @field_validator("elements")
    @classmethod
    def _known_elements(cls, elements: list[str]) -> list[str]:
        unknown = [e for e in elements if e not in ASE_ATOMIC_NUMBERS or e == "X"]
        if unknown:
            raise ValueError(f"unknown chemical element symbol(s): {unknown}")
        if len(set(elements)) != len(elements):
            raise ValueError(f"elements listed twice: {elements}")
        return sorted(elements, key=lambda e: ASE_ATOMIC_NUMBERS[e])

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.hidden_l_max is not None and self.hidden_l_max > self.l_max:
            raise ValueError(f"hidden_l_max={self.hidden_l_max} exceeds l_max={self.l_max}")
        stray = set(self.e0) - set(self.elements)
        if stray:
            raise ValueError(f"e0 given for elements not in the model: {sorted(stray)}")
        return self

    @property
    def feature_l_max(self) -> int:
        return min(1, self.l_max) if self.hidden_l_max is None else self.hidden_l_max

    @property
    def atomic_numbers(self) -> list[int]:
        return [ASE_ATOMIC_NUMBERS[e] for e in self.elements]
