"""Helpers shared by the simulation subcommands (md, relax, neb)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ase import Atoms
from ase.io import read

from equipot.sim.potentials import ModelPotential


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="equipot model file (.eqp)")
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="precision of the model evaluation (default float64)",
    )


def load_potential(
    path: Path, dtype: str, skin: float = 1.0, uncertainty: bool | None = False, efield=None
) -> ModelPotential:
    """The model (or committee: member means) in ``path`` as a potential; with
    ``uncertainty`` (``None``: whenever the file has uncertainty data or is a committee) an
    :class:`~equipot.sim.uncertain.UncertainPotential`; ``efield``: a uniform field
    (:class:`~equipot.sim.field.ElectricField`)."""
    from equipot.sim.uncertain import UncertainPotential
    from equipot.uq.committee import load_models

    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    members, committee_uq = load_models(path)
    has_uq = len(members) > 1 or members[0].uncertainty is not None
    if uncertainty or len(members) > 1 or (uncertainty is None and has_uq):
        return UncertainPotential(members, committee_uq, dtype=dtype, skin=skin, efield=efield)
    return ModelPotential(members[0], dtype=dtype, skin=skin, efield=efield)


def read_structure(path: Path, index: str = "-1") -> Atoms:
    """One structure from any file ASE reads (``index``: which frame, default the last)."""
    if not path.exists():
        raise FileNotFoundError(f"structure file {path} does not exist")
    try:
        atoms = read(path, index=index)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise ValueError(f"cannot read a structure from {path}: {exc}") from exc
    if isinstance(atoms, list):
        raise ValueError(f"{path}: --index must select one frame, got {len(atoms)}")
    if len(atoms) == 0:
        raise ValueError(f"{path}: the structure has no atoms")
    return atoms
