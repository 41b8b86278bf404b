"""equipot: E(3)-equivariant neural-network interatomic potentials."""

from __future__ import annotations

import numpy as np
import torch

from equipot.calculator import EquipotCalculator, atoms_to_graph
from equipot.graph import AtomicGraph, batch_graphs
from equipot.model.builder import build_model, model_from_config
from equipot.model.config import ModelConfig
from equipot.model.energy_model import EnergyModel
from equipot.model.io import load_model, save_model
from equipot.physics.derivatives import hessian_from_graph, hessian_vector_product, predict
from equipot.pretrained import available as pretrained_available
from equipot.pretrained import pretrained, pretrained_card, pretrained_path
from equipot.version import __version__


def hessian(model: EnergyModel, atoms, dtype: str | torch.dtype = "float64") -> np.ndarray:
    """Exact Hessian ∂²E/∂r∂r of ``atoms`` by autograd: (3N, 3N) numpy float64, eV/Å²."""
    from equipot.calculator import frozen_copy
    from equipot.model.builder import resolve_dtype

    dt = resolve_dtype(dtype)
    frozen = frozen_copy(model, dt, "cpu")
    graph = atoms_to_graph(atoms, model.config.r_max, dt)
    with torch.enable_grad():
        h = hessian_from_graph(frozen, graph)
    return h.detach().cpu().numpy().astype(np.float64)


__all__ = [
    "AtomicGraph",
    "EnergyModel",
    "EquipotCalculator",
    "ModelConfig",
    "__version__",
    "atoms_to_graph",
    "batch_graphs",
    "build_model",
    "hessian",
    "hessian_vector_product",
    "load_model",
    "model_from_config",
    "predict",
    "pretrained",
    "pretrained_available",
    "pretrained_card",
    "pretrained_path",
    "save_model",
]
