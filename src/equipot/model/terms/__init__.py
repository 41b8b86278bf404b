"""Extra energy terms of the model (see :mod:`equipot.model.terms.base`)."""

from __future__ import annotations

import importlib
import pkgutil

from equipot.model.config import ModelConfig
from equipot.model.terms.base import EnergyTerm, TermInputs

__all__ = ["EnergyTerm", "TermInputs", "build_terms"]


def build_terms(config: ModelConfig) -> dict[str, EnergyTerm]:
    """Every term the config asks for, from the modules of this package (sorted by name)."""
    terms: dict[str, EnergyTerm] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        build = getattr(module, "build", None)
        term = build(config) if build is not None else None
        if term is not None:
            if term.name in terms:
                raise ValueError(f"two energy terms are named {term.name!r}")
            terms[term.name] = term
    return terms
