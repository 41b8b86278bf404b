"""``build_model``: assemble an :class:`EnergyModel` from a few keyword arguments."""

from __future__ import annotations

import torch

from equipot.model.config import ModelConfig
from equipot.model.energy_model import EnergyModel


def build_model(
    elements: list[str],
    r_max: float = 5.0,
    l_max: int = 2,
    channels: int = 32,
    num_layers: int = 2,
    correlation: int = 3,
    seed: int = 0,
    dtype: torch.dtype | str = torch.float64,
    **options,
) -> EnergyModel:
    """A freshly initialised model; ``options`` are further :class:`ModelConfig` fields.

    Initialisation is reproducible from ``seed`` and leaves torch's global RNG untouched.
    """
    config = ModelConfig(
        elements=elements,
        r_max=r_max,
        l_max=l_max,
        channels=channels,
        num_layers=num_layers,
        correlation=correlation,
        **options,
    )
    return model_from_config(config, seed=seed, dtype=dtype)


def model_from_config(
    config: ModelConfig, *, seed: int = 0, dtype: torch.dtype | str = torch.float64
) -> EnergyModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EnergyModel(config)
    return model.to(resolve_dtype(dtype))


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "float64": torch.float64,
        "fp32": torch.float32,
        "fp64": torch.float64,
    }
    if dtype not in names:
        raise ValueError(f"unsupported dtype {dtype!r}: use 'float32' or 'float64'")
    return names[dtype]
