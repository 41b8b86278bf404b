"""Adding chemical elements to a trained model.

Per-element parameters are the element embedding, the weights of the many-body product
basis and the species-aware skip path. A new element starts as a copy of its chemically
closest known element — the nearest one in the same group of the periodic table, else the
nearest in the same period, else the nearest atomic number — so the fine-tuned model begins
from a sensible chemistry instead of random features (a new F starts as Cl or O, S as O).
"""

from __future__ import annotations

import re

import torch
from ase.data import atomic_numbers as Z_OF

from equipot.model.config import ModelConfig
from equipot.model.energy_model import EnergyModel

# parameter-name pattern → the axis that runs over elements
ELEMENT_AXES = {
    r"^embedding$": 0,
    r"\.node\.product\.weights\.\d+$": 0,
    r"\.node\.self_connection\.weights$": 1,
}


def element_axis(name: str) -> int | None:
    for pattern, axis in ELEMENT_AXES.items():
        if re.search(pattern, name):
            return axis
    return None


def _group_period(z: int) -> tuple[int, int]:
    """(group 1–18, period) of main-group and transition elements; lanthanides → group 3."""
    starts = [1, 3, 11, 19, 37, 55, 87, 119]
    period = next(p for p, s in enumerate(starts[1:], start=1) if z < s)
    k = z - starts[period - 1]  # 0-based position in the period
    if period == 1:
        return (1 if z == 1 else 18), 1
    if period <= 3:
        return (k + 1 if k < 2 else k + 11), period
    if period >= 6:  # f-block: 14 extra elements after group 2
        if 2 <= k < 17:
            return 3, period
        k = k - 14 if k >= 17 else k
    return k + 1, period


def template_element(new: str, known: list[str]) -> str:
    """The known element a new one is initialised from (see module docstring)."""
    z = Z_OF[new]
    group, period = _group_period(z)

    def score(e: str) -> tuple:
        g, p = _group_period(Z_OF[e])
        return (g != group, p != period, abs(p - period) + abs(g - group), abs(Z_OF[e] - z))

    return min(known, key=score)


def extend_state(
    state: dict[str, torch.Tensor], old: list[str], new: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Per-element tensors of ``state`` (elements ``old``) re-laid out for elements ``new``.

    Known elements keep their rows; added ones copy their template's. Returns the new state
    and {added element: template}.
    """
    missing = [e for e in old if e not in new]
    if missing:
        raise ValueError(f"cannot drop elements {missing} from a trained model")
    templates = {e: template_element(e, old) for e in new if e not in old}
    rows = torch.tensor([old.index(templates.get(e, e)) for e in new])
    out = {}
    for name, value in state.items():
        axis = element_axis(name)
        out[name] = value if axis is None else value.index_select(axis, rows).clone()
    return out, templates


def extend_model(model: EnergyModel, elements: list[str], **config_updates) -> EnergyModel:
    """A copy of ``model`` for ``elements`` (a superset of its own), new ones from templates;
    ``config_updates`` change further config fields (e.g. ``e0``)."""
    old = list(model.config.elements)
    e0 = dict(model.config.e0)
    config = ModelConfig.model_validate(
        model.config.model_dump() | {"elements": elements, "e0": e0} | config_updates
    )
    state, _ = extend_state(model.state_dict(), old, list(config.elements))
    extended = EnergyModel(config).to(model.dtype)
    extended.load_state_dict(state)
    return extended
