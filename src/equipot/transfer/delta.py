"""Δ-learning: E = E_baseline + E_correction, with the correction a trained equipot model.

Train on the difference between the reference and the baseline (:func:`delta_labels`, or
``equipot label DATA --calculator BASELINE --delta``), then use both as one ASE calculator::

    calc = DeltaCalculator("correction.eqp", baseline="gfn2-xtb")

Forces and stresses add the same way (both are derivatives of the summed energy).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator

from equipot.transfer.teachers import teacher

_PROPERTIES = ("energy", "forces", "stress")


class DeltaCalculator(Calculator):
    """Baseline calculator (name or object) + equipot correction (model or model file)."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, model, baseline: str | Calculator, *, head=None, dtype="float64", **kw):
        from equipot.calculator import EquipotCalculator

        super().__init__(**kw)
        if isinstance(model, (str, Path)):
            self.correction = EquipotCalculator(model, dtype=dtype, head=head)
        else:
            self.correction = EquipotCalculator(model, dtype=dtype)
        self.baseline = teacher(baseline)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        wanted = [p for p in properties if p in _PROPERTIES] or ["energy"]
        if "stress" in wanted and not self.atoms.pbc.all():
            raise ValueError("stress is only defined for structures periodic in all 3 directions")
        parts = []
        for calc in (self.baseline, self.correction):
            copy = self.atoms.copy()
            copy.calc = calc
            parts.append(_results(copy, wanted))
        self.results = {k: parts[0][k] + parts[1][k] for k in parts[0]}
        self.results["free_energy"] = self.results["energy"]


def _results(atoms: Atoms, properties) -> dict:
    out = {"energy": atoms.get_potential_energy()}
    if "forces" in properties or "stress" in properties:
        out["forces"] = np.asarray(atoms.get_forces())
    if "stress" in properties:
        out["stress"] = np.asarray(atoms.get_stress())
    return out


def delta_labels(frames: Iterable[Atoms], baseline: str | Calculator) -> list[Atoms]:
    """Copies of labelled ``frames`` whose energy / forces / stress are reference − baseline
    (what the correction model trains on)."""
    calc = teacher(baseline)
    out = []
    for k, atoms in enumerate(frames):
        if atoms.calc is None:
            raise ValueError(f"frame {k} has no reference labels to subtract a baseline from")
        ref = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if "stress" in atoms.calc.results:
            ref["stress"] = atoms.get_stress()
        copy = atoms.copy()
        copy.calc = calc
        base = _results(copy, list(ref))
        copy.calc = SinglePointCalculator(copy, **{k: ref[k] - base[k] for k in ref})
        out.append(copy)
    return out
