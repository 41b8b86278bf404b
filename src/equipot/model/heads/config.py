"""Configuration of the model's tensor output heads (stored in :class:`ModelConfig`).

``build_model(..., heads={"dipole": {}, "polarizability": {}, "bec": {}})`` — the name says
what a head is, the value how it is built (a :class:`HeadConfig` or a dict of its fields;
a string is short for ``{"tensor": string}``). Three names couple to physics:

* ``dipole`` — a vector per system (e·Å), μ = Σ_i q_i r_i + Σ_i μ_i with learned fixed
  charges q_z per element (Σ_i q_i = total charge) and environment-dependent atomic dipoles μ_i
  (which carry charge flow); enters the energy in a field ℰ as −μ·ℰ.
* ``polarizability`` — a symmetric rank-2 tensor per system (e·Å²/V), enters as −½ ℰ·α·ℰ.
* ``bec`` — Born effective charges learned directly: a general rank-2 tensor per atom (e),
  with the acoustic sum rule Σ_i Z*_i = Q·1 imposed.

Any other name is a free tensor head: ``tensor`` is a preset (``scalar``, ``vector``,
``symmetric``, ``general``, ``antisymmetric``, ``piezoelectric``, ``elastic``) or an index
formula in e3nn's notation (``"ijk=ikj"``), ``pseudo`` makes it a pseudo-tensor.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from equipot.model.heads.cartesian import cartesian_basis, resolve_formula

FIELD_HEADS = ("dipole", "polarizability")

_DEFAULTS = {
    "dipole": {"tensor": "vector", "per": "system", "charges": True},
    "polarizability": {"tensor": "symmetric", "per": "system"},
    "bec": {"tensor": "general", "per": "atom", "sum_rule": True},
}


class HeadConfig(BaseModel):
    """How one head is built; ``None`` fields take the defaults of the head's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tensor: str | None = Field(None, description="preset or index formula (module docstring)")
    pseudo: bool = Field(False, description="pseudo-tensor: an extra sign under reflections")
    per: Literal["system", "atom"] | None = None
    reduce: Literal["sum", "mean"] = Field("sum", description="atoms → system")
    traceless: bool = Field(False, description="drop the L = 0 parts (e.g. a quadrupole)")
    charges: bool | None = Field(
        None, description="vector heads: add Σ q_i r_i, learned charges per element (dipole: on)"
    )
    sum_rule: bool | None = Field(
        None, description="per-atom rank-2 heads: impose Σ_i T_i = Q·1 (bec: on)"
    )
    channels: int = Field(16, ge=1)
    l_max: int | None = Field(None, ge=0, le=4, description="degree of the head's messages")
    radial_hidden: list[int] = Field(default_factory=lambda: [32])
    gate_hidden: int = Field(32, ge=1)
    scale: float = Field(1.0, description="output unit scale (set from the labels in training)")


def resolve_head(name: str, value) -> HeadConfig:
    """Fill the name's defaults and check the combination (errors name the head)."""
    if isinstance(value, str):
        value = {"tensor": value}
    elif isinstance(value, HeadConfig):
        value = value.model_dump(exclude_unset=True)
    elif value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"head {name!r}: expected a mapping of options, got {value!r}")
    merged = {**_DEFAULTS.get(name, {"tensor": "vector", "per": "system"}), **value}
    config = HeadConfig(**merged)
    formula = resolve_formula(config.tensor)
    config = config.model_copy(update={"tensor": formula})
    basis = cartesian_basis(formula, config.pseudo)
    expect = {"dipole": "i", "polarizability": "ij=ji"}.get(name)
    if expect is not None and (formula != expect or config.per != "system" or config.pseudo):
        raise ValueError(
            f"head {name!r} couples to the electric field and must be a per-system "
            f"{'vector' if expect == 'i' else 'symmetric rank-2 tensor'}; got tensor "
            f"{formula!r}, per {config.per!r}"
        )
    if config.charges and (basis.rank != 1 or config.per != "system" or config.pseudo):
        raise ValueError(f"head {name!r}: charges only apply to a per-system (polar) vector")
    if config.sum_rule and (basis.rank != 2 or config.per != "atom" or config.pseudo):
        raise ValueError(f"head {name!r}: sum_rule only applies to a per-atom rank-2 tensor")
    if config.traceless and all(L == 0 for L, _ in basis.irreps):
        raise ValueError(f"head {name!r}: a traceless {formula!r} tensor has no components")
    return config


def target_irreps(config: HeadConfig) -> list[tuple[int, int]]:
    """The (L, parity) of every irrep copy the head predicts, in the basis' order."""
    irreps = list(cartesian_basis(config.tensor, config.pseudo).irreps)
    return [ir for ir in irreps if not (config.traceless and ir[0] == 0)]
