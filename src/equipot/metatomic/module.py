"""The TorchScript module inside an exported metatomic model (see :mod:`equipot.metatomic`).

No ``from __future__ import annotations`` here, and typing's generics: TorchScript compiles
this module from its source and reads the annotations.
"""

# ruff: noqa: UP006, UP035, UP045
from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System


class EquipotEngineModule(torch.nn.Module):
    """Energies of an equipot model through its C++ inference engine (a TorchScript class,
    ``torch.classes.equipot.Engine``, whose state is the packed engine tensors)."""

    def __init__(self, packed: Dict[str, torch.Tensor], atomic_numbers: List[int], r_max: float):
        super().__init__()
        self.engine = torch.classes.equipot.Engine(packed)
        lookup = torch.full((128,), -1, dtype=torch.int64)
        for index, z in enumerate(atomic_numbers):
            lookup[z] = index
        self.register_buffer("species_of", lookup)
        self.neighbors = NeighborListOptions(
            cutoff=float(r_max), full_list=True, strict=True, requestor="equipot"
        )

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbors]

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        if "energy" not in outputs:
            return {}
        if selected_atoms is not None:
            raise ValueError("equipot models compute every atom's energy (no selected_atoms)")
        per_atom = outputs["energy"].sample_kind == "atom"
        values: List[torch.Tensor] = []
        samples: List[torch.Tensor] = []
        for index, system in enumerate(systems):
            species = self.species_of[system.types]
            if bool((species < 0).any()):
                raise ValueError("the system has an element that the equipot model lacks")
            pairs = system.get_neighbor_list(self.neighbors)
            ij = pairs.samples.values
            atomic = torch.ops.equipot.atomic_energies(
                self.engine, pairs.values.reshape(-1, 3), ij[:, 0], ij[:, 1], species
            )
            n = atomic.shape[0]
            if per_atom:
                values.append(atomic.reshape(-1, 1))
                system_index = torch.full((n,), index, dtype=torch.int32)
                atom = torch.arange(n, dtype=torch.int32)
                samples.append(torch.stack([system_index, atom], dim=1))
            else:
                values.append(atomic.sum().reshape(1, 1))
                samples.append(torch.tensor([[index]], dtype=torch.int32))
        names = ["system", "atom"] if per_atom else ["system"]
        block = TensorBlock(
            values=torch.cat(values),
            samples=Labels(names, torch.cat(samples)),
            components=[],
            properties=Labels("energy", torch.tensor([[0]], dtype=torch.int32)),
        )
        keys = Labels("_", torch.tensor([[0]], dtype=torch.int32))
        return {"energy": TensorMap(keys, [block])}
