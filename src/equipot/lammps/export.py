"""Model files for the LAMMPS plugin: the model plus its packed inference engine.

The plugin must evaluate exactly the engine the ASE calculator builds, without Python. The
packing (CG and path tables, per-component weights, radial tables) stays in one place,
:func:`equipot.model.inference.pack_engine`; the exported file carries its tensors, in float64,
beside the weights (still an ordinary equipot model file: :func:`equipot.load_model` reads it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from equipot.calculator import frozen_copy
from equipot.model.energy_model import EnergyModel
from equipot.model.inference import ENGINE_FORMAT, pack_engine
from equipot.model.io import load_model, read_model_metadata, save_model


def export_model(
    model: EnergyModel | str | Path, out: str | Path, *, radial_table: int | None = None
) -> Path:
    """Write ``model`` (or the model file it names) with its packed engine to ``out``.

    ``radial_table``: nodes of the tabulated radial functions (default: the model's, 1,024);
    0 evaluates the radial network exactly (slower, for tests against autograd).
    """
    extra = None
    if not isinstance(model, EnergyModel):
        extra = _extra(model)
        model = load_model(model)
    check_exportable(model)
    frozen = frozen_copy(model, torch.float64, "cpu")
    if radial_table is not None:
        frozen.inference_radial_table = radial_table
    engine = pack_engine(frozen, torch.float64)
    return save_model(model, out, extra, engine=engine, engine_format=ENGINE_FORMAT)


def check_exportable(model: EnergyModel, host: str = "the LAMMPS plugin") -> None:
    """Refuse what the packed engine cannot evaluate: ``host`` would give energies that
    differ from equipot's."""
    lacking = [name for name, term in model.terms.items() if term.engine_tensors() is None]
    if lacking:
        raise ValueError(
            f"{host} does not evaluate the model's energy terms {', '.join(lacking)}"
            " (they have no packed form); export a model built without them"
        )
    if model.long_range is not None:
        raise ValueError(
            f"{host} does not evaluate long-range electrostatics (model.long_range); "
            "export a short-range model"
        )
    if model.config.saturation is not None:
        raise ValueError(
            "the LAMMPS plugin evaluates the unbounded network: this model bounds it "
            f"(model.saturation = {model.config.saturation} eV); export a model without it"
        )


def _extra(path: str | Path) -> dict | None:
    import json

    return json.loads(read_model_metadata(path).get("extra", "{}")) or None
