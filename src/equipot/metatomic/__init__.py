"""Export equipot models in the metatomic format (``metatomic-torch``), for the engines that read
it: i-PI, PLUMED, ASE's metatomic calculator, LAMMPS-metatomic.

An exported file is a TorchScript :class:`metatomic.torch.AtomisticModel` around
:class:`~equipot.metatomic.module.EquipotEngineModule`: a few lines of TorchScript that call
equipot's C++ inference engine (the TorchScript class ``torch.classes.equipot.Engine`` and the
operator ``torch.ops.equipot.atomic_energies``). The engine is rebuilt on load from the packed
tensors stored in the file (:func:`equipot.model.inference.pack_engine`, the tensors the LAMMPS
plugin reads), so the model is the same function as the ASE calculator's, ZBL repulsion
included; forces and stress come from metatomic's autograd through the engine's own backward
pass. Float64, CPU.

The class and operator live in a small library of their own, compiled against libtorch alone
(:func:`~equipot.metatomic.build.build_library`; no Python inside). The export copies it into
``<model>-extensions/`` beside the file (metatomic's ``collect_extensions``), so a process
without equipot loads the model with ``extensions_directory`` pointing there (Python:
``MetatomicCalculator(path, extensions_directory=...)``; C++ engines: their extensions
option). In a process that has equipot, :func:`load_extension` loads the library instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from equipot.model.energy_model import EnergyModel


def load_extension() -> Path:
    """Register ``torch.classes.equipot.Engine`` / ``torch.ops.equipot.atomic_energies`` in this
    process (the library is compiled on first use) and return the library's path."""
    from equipot.metatomic.build import build_library

    library = build_library()
    if str(library) not in torch.ops.loaded_libraries:
        torch.ops.load_library(str(library))
    return library


def extensions_directory(out: str | Path) -> Path:
    """Where :func:`export_metatomic` puts the libraries a model file ``out`` needs."""
    out = Path(out)
    return out.with_name(f"{out.stem}-extensions")


def export_metatomic(model: EnergyModel | str | Path, out: str | Path) -> Path:
    """Write ``model`` (or the model file it names) as a metatomic model file ``out``, and the
    engine library it needs into :func:`extensions_directory` (replaced if it exists)."""
    from metatomic.torch import AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput

    from equipot.calculator import frozen_copy
    from equipot.lammps.export import check_exportable
    from equipot.metatomic.module import EquipotEngineModule
    from equipot.model.inference import pack_engine
    from equipot.model.io import load_model

    load_extension()
    if not isinstance(model, EnergyModel):
        model = load_model(model)
    check_exportable(model, "the metatomic export")
    frozen = frozen_copy(model, torch.float64, "cpu")
    packed = pack_engine(frozen, torch.float64)
    c = model.config
    module = EquipotEngineModule(packed, list(c.atomic_numbers), c.r_max).eval()
    capabilities = ModelCapabilities(
        outputs={"energy": ModelOutput(unit="eV", sample_kind="atom")},  # or per system
        atomic_types=sorted(c.atomic_numbers),
        interaction_range=c.r_max * c.num_layers,
        length_unit="angstrom",
        supported_devices=["cpu"],
        dtype="float64",
    )
    metadata = ModelMetadata(
        name="equipot model",
        description=f"equipot E(3)-equivariant potential for {', '.join(c.elements)}",
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    library = load_extension()
    if not library.resolve().is_relative_to(Path(sys.prefix).resolve()):
        raise RuntimeError(
            f"equipot's TorchScript library was built in {library.parent} because the Python "
            f"prefix {sys.prefix} is read-only; metatomic collects extensions only from inside "
            "the prefix: export from an environment you can write to (a virtualenv)"
        )
    AtomisticModel(module, metadata, capabilities).save(
        str(out), collect_extensions=str(extensions_directory(out))
    )
    return out
