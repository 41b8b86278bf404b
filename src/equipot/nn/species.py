"""Per-atom element indices plus which elements occur (computed once per forward pass)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Species:
    index: Tensor  # (N,) model element index of every atom
    present: tuple[int, ...]  # element indices that occur, ascending

    @classmethod
    def of(cls, index: Tensor, num_elements: int) -> Species:
        if num_elements == 1 or index.numel() == 0:
            return cls(index, (0,))
        return cls(index, tuple(torch.unique(index).tolist()))

    @property
    def single(self) -> int | None:
        """The only element present, or None for mixtures."""
        return self.present[0] if len(self.present) == 1 else None

    def rows(self, element: int) -> Tensor:
        return torch.nonzero(self.index == element).squeeze(1)
