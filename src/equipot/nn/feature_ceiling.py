"""Feature ceiling: no layer's aggregated messages larger than they were on the training data.

Each layer t sums its neighbours' messages into A^(t)_i (N, (L+1)², C), and the symmetric
contraction then raises A to powers up to the correlation order ν. Where the sum is larger than
anything the training set produced — more neighbours within the cutoff under compression,
neighbours at the (held) radial floor — that polynomial runs away: a biphenyl compressed to 0.75
of its size gave 580 eV against GFN2-xTB's 119 eV, and the radial floor alone does not bound it.
The ceiling holds each block's norm at what the data showed. For the block a = A^(t)_{i,l,·c}
(its 2l + 1 components) with norm n = |a| and the training maximum m = m^(t)_{l,c}:

    a → a · ñ(n)/n,    ñ(n) = n                               (n ≤ m)
                            = m + δ·tanh((n − m)/δ)             (n > m),   δ = softness · m

so ñ ≤ m + δ. The map is C² at n = m (ñ' = 1, ñ'' = 0 there), acts on norms only (equivariant),
and is the identity on every training frame: training learns what it would without it. The
maxima depend on the weights, so they are measured on the training set after training
(:func:`fit_feature_ceiling`, called by ``equipot train`` with ``model.feature_ceiling: data``)
and stored in the model's config; fine-tuning drops them and measures them again.
Blocks that are zero on the whole training set (m = 0) stay zero.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from equipot.nn.constants import Constants


def block_slices(dim: int) -> list[slice]:
    """The degree-l component blocks l², …, (l+1)² − 1 of a (N, (L+1)², C) feature."""
    lmax = round(dim**0.5) - 1
    if (lmax + 1) ** 2 != dim:
        raise ValueError(f"{dim} components are not (L+1)² for any L")
    return [slice(l * l, (l + 1) ** 2) for l in range(lmax + 1)]


def block_norms(A: Tensor) -> Tensor:
    """|A_{i,l,·c}| (N, L+1, C)."""
    return torch.stack(
        [torch.linalg.vector_norm(A[:, s], dim=1) for s in block_slices(A.shape[1])], 1
    )


class FeatureCeiling(nn.Module):
    """The maxima m^(t) (L_t+1, C) of every layer and the softness (module docstring)."""

    def __init__(self, tops: list[list[list[float]]], softness: float):
        super().__init__()
        self.softness = float(softness)
        self.num_layers = len(tops)
        self.constants = Constants(**{f"top{t}": np.asarray(m, float) for t, m in enumerate(tops)})

    def top(self, layer: int, like: Tensor) -> Tensor:
        return self.constants.get(f"top{layer}", like)

    def holds(self, layer: int, A: Tensor) -> bool:
        """Whether any block of A is above its maximum (there the ceiling changes it)."""
        return bool((block_norms(A) > self.top(layer, A)).any())

    def forward(self, layer: int, A: Tensor) -> Tensor:
        """A with every block held below its ceiling (differentiable)."""
        top = self.top(layer, A)
        n = block_norms(A)
        over = n > top
        if not bool(over.any()):
            return A
        delta = torch.where(top > 0, self.softness * top, torch.ones_like(top))
        held = top + delta * torch.tanh(((n - top) / delta).clamp(min=0.0))
        factor = torch.where(over, held / n.clamp(min=torch.finfo(A.dtype).tiny), 1.0)
        factor = torch.where(top > 0, factor, torch.where(over, 0.0, 1.0))
        parts = [A[:, s] * factor[:, l : l + 1] for l, s in enumerate(block_slices(A.shape[1]))]
        return torch.cat(parts, 1)


def fit_feature_ceiling(model: nn.Module, dataset, batch_size: int = 16) -> list:
    """m^(t)_{l,c} = the largest block norm of A^(t) over ``dataset`` (a GraphDataset), for the
    model's config: a list per layer of (L_t+1) lists of C floats. The model's own ceiling, if
    any, is not applied while measuring."""
    recorder = _Recorder()
    saved = model.feature_ceiling
    model.feature_ceiling = recorder
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                positions = list(range(start, min(start + batch_size, len(dataset))))
                graph = dataset.batch(positions, model.dtype).graph
                model.local_energies(graph)
    finally:
        model.feature_ceiling = saved
    return [recorder.tops[t].tolist() for t in sorted(recorder.tops)]


def set_feature_ceiling(model: nn.Module, tops: list | None) -> nn.Module:
    """``model`` (an EnergyModel) with the ceiling ``tops`` (None: none) in its config and
    applied; returns the same object."""
    config = model.config.model_dump()
    config["feature_ceiling"] = tops
    model.config = type(model.config).model_validate(config)
    model.feature_ceiling = (
        None if tops is None else FeatureCeiling(tops, model.config.feature_ceiling_softness)
    )
    model.engine_slot.engine = None  # the packed engine carries the ceiling: rebuild it
    return model


class _Recorder(nn.Module):
    """Stands in for the ceiling while :func:`fit_feature_ceiling` runs: keeps the maxima."""

    def __init__(self) -> None:
        super().__init__()
        self.tops: dict[int, np.ndarray] = {}

    def forward(self, layer: int, A: Tensor) -> Tensor:
        n = block_norms(A.detach()).amax(0).double().cpu().numpy() if len(A) else None
        if n is not None:
            prev = self.tops.get(layer)
            self.tops[layer] = n if prev is None else np.maximum(prev, n)
        elif layer not in self.tops:
            self.tops[layer] = np.zeros((round(A.shape[1] ** 0.5), A.shape[2]))
        return A
