"""Short-range repulsion: the ZBL universal screened nuclear repulsion, switched off before
bonding distances.

For a pair of atoms with nuclear charges Z_i, Z_j at distance r (Ziegler, Biersack, Littmark):

    V(r) = k Z_i Z_j / r · φ(r/a),     a = 0.4685 Å / (Z_i^0.23 + Z_j^0.23),   k = e²/4πε₀
    φ(x) = 0.18175 e^(−3.19980x) + 0.50986 e^(−0.94229x) + 0.28022 e^(−0.40290x)
           + 0.02817 e^(−0.20162x)

and the term's pair energy is V(r)·S(r) with the C² switch S = 1 − 10t³ + 15t⁴ − 6t⁵,
t = (r − r_in)/(r_out − r_in) clamped to [0, 1], r_out = outer·(R_i + R_j) (covalent radii,
capped at r_max) and r_in = r_out·inner/outer. With the defaults (0.5, 0.75) a C–H pair is
repelled below 0.80 Å (full ZBL below 0.53 Å) — under every C–H distance of thermal MD — so the
term leaves the energy of ordinary structures alone and the network learns them as before,
while compressed or colliding atoms meet a wall that grows like Z_i Z_j / r instead of the
network's arbitrary extrapolation. It needs no parameters; each directed edge i→j adds ½ V S
to atom i (both directions are in the neighbour list). The C++ twin used by the inference
engine is ``kernels/zbl.h``.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers, covalent_radii
from torch import Tensor

from equipot.kernels import cpu_kernels
from equipot.model.config import ModelConfig
from equipot.model.terms.base import EnergyTerm, TermInputs
from equipot.nn.constants import Constants

COULOMB = 14.399645478425668  # e²/(4πε0), eV·Å
SCREENING = 0.46850  # 0.8854 a0, Å
COEFF = (0.18175, 0.50986, 0.28022, 0.02817)
EXPONENT = (3.19980, 0.94229, 0.40290, 0.20162)


def build(config: ModelConfig) -> ZBLRepulsion | None:
    if config.repulsion is None:
        return None
    return ZBLRepulsion(
        config.elements, config.repulsion.inner, config.repulsion.outer, config.r_max
    )


class ZBLRepulsion(EnergyTerm):
    name = "repulsion"
    pairwise = True  # each directed edge i→j adds ½ V(r_ij) S(r_ij) to atom i

    def __init__(self, elements: list[str], inner: float, outer: float, r_max: float):
        super().__init__()
        z = np.array([atomic_numbers[e] for e in elements], dtype=np.float64)
        self.inner, self.outer, self.cap = float(inner), float(outer), float(r_max)
        self.constants = Constants(charge=z, radius=covalent_radii[z.astype(int)])

    def pair_energy(self, zi: Tensor, zj: Tensor, r: Tensor, r_out: Tensor) -> Tensor:
        """V(r)·S(r) per pair (module docstring), differentiable."""
        a = SCREENING / (zi**0.23 + zj**0.23)
        x = r / a
        phi = sum(c * torch.exp(-d * x) for c, d in zip(COEFF, EXPONENT, strict=True))
        r_in = r_out * (self.inner / self.outer)
        t = ((r - r_in) / (r_out - r_in)).clamp(0.0, 1.0)
        switch = 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t * t)
        return COULOMB * zi * zj / r * phi * switch

    def forward(self, inputs: TermInputs) -> Tensor:
        graph, species = inputs.graph, inputs.species
        like = inputs.vectors
        charge, radius = self.constants.get("charge", like), self.constants.get("radius", like)
        i, j = graph.edge_index[0], graph.edge_index[1]
        si, sj = species.index_select(0, i), species.index_select(0, j)
        r_out = (self.outer * (radius[si] + radius[sj])).clamp(max=self.cap)
        r = torch.linalg.vector_norm(like, dim=1)
        close = r < r_out
        atomic = torch.zeros(graph.num_atoms, dtype=like.dtype, device=like.device)
        if not bool(close.any()):
            return atomic
        keep = torch.nonzero(close).squeeze(1)
        rk = r.index_select(0, keep)
        pair = self.pair_energy(
            charge[si.index_select(0, keep)],
            charge[sj.index_select(0, keep)],
            rk,
            r_out.index_select(0, keep),
        )
        return atomic.index_add(0, i.index_select(0, keep), 0.5 * pair)

    def engine_tensors(self) -> dict[str, Tensor]:
        """Z and covalent radius per element, inner, outer and cap (``zbl::Parameters``)."""

        def real(x: float) -> Tensor:
            return torch.tensor([float(x)], dtype=torch.float64)

        return {
            "charge": torch.as_tensor(self.constants.array("charge"), dtype=torch.float64),
            "radius": torch.as_tensor(self.constants.array("radius"), dtype=torch.float64),
            "inner": real(self.inner),
            "outer": real(self.outer),
            "cap": real(self.cap),
        }

    def edge_gradient(self, inputs: TermInputs) -> tuple[Tensor, Tensor]:
        kernels = cpu_kernels()
        vectors = inputs.vectors
        if kernels is None or vectors.device.type != "cpu":
            return super().edge_gradient(inputs)
        atomic, grad = kernels.zbl_term(
            vectors.detach(),
            inputs.graph.edge_index,
            inputs.species,
            torch.as_tensor(self.constants.array("charge")),
            torch.as_tensor(self.constants.array("radius")),
            self.inner,
            self.outer,
            self.cap,
        )
        return atomic, grad
