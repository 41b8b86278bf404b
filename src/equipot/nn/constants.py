"""Fixed numerical constants (CG coefficients, coupling bases, index maps) of a layer.

They are kept as float64 / int64 numpy arrays, not as module buffers, so casting a model to
float32 and back never rounds them, and handed out as tensors of the dtype and device in use
(converted once per dtype/device and cached).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class Constants:
    def __init__(self, **arrays: np.ndarray):
        self._arrays = {name: np.asarray(a) for name, a in arrays.items()}
        self._cache: dict[tuple, Tensor] = {}

    def add(self, name: str, array: np.ndarray) -> None:
        self._arrays[name] = np.asarray(array)

    def array(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def get(self, name: str, like: Tensor) -> Tensor:
        """Constant ``name`` on ``like``'s device; floating arrays take ``like``'s dtype."""
        key = (name, like.dtype, like.device)
        tensor = self._cache.get(key)
        if tensor is None:
            array = self._arrays[name]
            floating = np.issubdtype(array.dtype, np.floating)
            dtype = like.dtype if floating else torch.int64
            tensor = torch.as_tensor(array, dtype=dtype, device=like.device)
            self._cache[key] = tensor
        return tensor


def parameter_list(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The module's parameters as a plain list, built once (a hot-path shortcut for
    ``module.parameters()``, which walks the module tree on every call). Kept in ``__dict__``
    so it is not registered as state; ``deepcopy`` maps it onto the copy's parameters."""
    params = module.__dict__.get("_parameter_list")
    if params is None:
        params = list(module.parameters())
        module.__dict__["_parameter_list"] = params
    return params


def is_frozen(module: torch.nn.Module) -> bool:
    """True when no parameter of ``module`` requires a gradient (inference)."""
    return not any(p.requires_grad for p in parameter_list(module))
