"""Export equipot models in the metatomic format (``metatomic-torch``), for the engines that read
it: i-PI, PLUMED, ASE's metatomic calculator, LAMMPS-metatomic.

An exported file is a TorchScript :class:`metatomic.torch.AtomisticModel` around
:class:`~equipot.metatomic.module.EquipotEngineModule`: a few lines of TorchScript that call
equipot's C++ inference engine (the TorchScript class ``torch.classes.equipot.Engine`` and the
operator ``torch.ops.equipot.atomic_energies``, registered by equipot's CPU kernels). The
engine is rebuilt on load from the packed tensors stored in the file
(:func:`equipot.model.inference.pack_engine`, the tensors the LAMMPS plugin reads), so the
model is the same function as the ASE calculator's, ZBL repulsion included; forces and stress
come from metatomic's autograd through the engine's own backward pass.

Loading needs the operator: call :func:`equipot.metatomic.load_extension` before metatomic
loads the file (``MetatomicCalculator(path)``, ``load_atomistic_model``), in a Python process;
without it metatomic reports missing TorchScript extensions. Float64, CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from equipot.model.energy_model import EnergyModel


def load_extension() -> None:
    """Register ``torch.classes.equipot.Engine`` / ``torch.ops.equipot.atomic_energies``
    (equipot's CPU kernels, compiled on first use)."""
    from equipot.kernels import cpu_kernels

    if cpu_kernels() is None:
        raise RuntimeError(
            "equipot's C++ kernels are unavailable (EQUIPOT_KERNELS=0 or no compiler): the "
            "metatomic export runs the model through them"
        )


def export_metatomic(model: EnergyModel | str | Path, out: str | Path) -> Path:
    """Write ``model`` (or the model file it names) as a metatomic model file ``out``."""
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
    AtomisticModel(module, metadata, capabilities).save(str(out))
    return out
