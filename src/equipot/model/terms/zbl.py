"""Short-range repulsion: the ZBL universal screened nuclear repulsion, switched off before
bonding distances.

For a pair of atoms with nuclear charges Z_i, Z_j at distance r (Ziegler, Biersack, Littmark):

    V(r) = k Z_i Z_j / r · φ(r/a),     a = 0.4685 Å / (Z_i^0.23 + Z_j^0.23),   k = e²/4πε₀
    φ(x) = 0.18175 e^(−3.19980x) + 0.50986 e^(−0.94229x) + 0.28022 e^(−0.40290x)
           + 0.02817 e^(−0.20162x)

and the term's pair energy is V(r)·S(r) with the C² switch S = 1 − 10t³ + 15t⁴ − 6t⁵,
t = (r − r_in)/(r_out − r_in) clamped to [0, 1], r_out = outer·(R_i + R_j) (capped at r_max)
and r_in = r_out·inner/outer. R are per-element radii: the covalent radii, or switch radii
fitted to the training data (:func:`switch_radii`).

Where the switch sits matters more than anything else about the term. ZBL is the nuclear
repulsion screened by the core electrons; at bonding distances it is far too repulsive (for
methyl acetate at 300 K with the switch over 0.6–1.0 × the covalent sum it contributes 3.0 ±
0.8 eV and force components of 9 eV/Å RMS to ordinary frames whose reference forces are 1 eV/Å
RMS: the network would have to learn to cancel it). Switched off too early (0.5–0.75 × the
covalent sum: C–H repelled only below 0.80 Å) it leaves a gap below the shortest distances
of the data (C–H ≈ 0.99 Å at 300 K) where only the network's extrapolation sets the energy —
there a trained model fell 3 eV into a spurious minimum at C–H 0.87 Å. Switch radii from the
data (``switch: data``: full ZBL below 0.85, none above 0.93 × the shortest distance of the
pair in the training set) close the gap with a wall right below the data — several times too
steep (methyl acetate compressed to 0.75: +93 eV of ZBL, GFN2-xTB +43 eV in all). The training
default closes it instead by holding the network's view at the data's shortest distances
(:mod:`equipot.nn.radial_floor`) and keeps the covalent window for the wall. Each directed
edge i→j adds ½ V S to atom i (both directions are in the neighbour list). The C++ twin used by
the inference engine is ``kernels/zbl.h``; it reads the same per-element radii from the packed
tensors (so does the LAMMPS plugin).
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
    rep = config.repulsion
    if rep is None:
        return None
    return ZBLRepulsion(config.elements, rep.inner, rep.outer, config.r_max, rep.radii)


def switch_radii(
    shortest: dict[tuple[str, str], float], elements: list[str], outer: float = 1.0
) -> dict[str, float]:
    """Per-element switch radii R_e (Å) with outer·(R_a + R_b) ≤ the shortest distance d_ab of
    every element pair seen in the training data, the wall as close to the data as possible.

    ``shortest`` maps element pairs to their shortest distance in the data (pairs within the
    cutoff). With several elements a sum of per-element radii cannot meet every pair, so a
    linear programme maximises the worst coverage outer·(R_a + R_b)/d_ab over the *bonded*
    pairs (d_ab below the covalent sum: the only ones where a gap matters; non-bonded pairs
    are constraints only), then, a little, the mean coverage, under 0 < R_e ≤ covalent radius
    (the wall never reaches beyond the covalent sum). The term is then exactly zero on every
    training frame and starts just below the data.
    """
    from scipy.optimize import linprog

    index = {e: k for k, e in enumerate(elements)}
    covalent = covalent_radii[[atomic_numbers[e] for e in elements]]
    n = len(elements)
    upper, rhs, ratio, objective = [], [], [], np.zeros(n + 1)
    objective[n] = -1.0  # variables: R_0 … R_{n-1}, t (the worst coverage)
    for (a, b), d in shortest.items():
        if a not in index or b not in index:
            raise ValueError(f"shortest distance given for {a}–{b}, model elements {elements}")
        row = np.zeros(n + 1)
        row[index[a]] += outer
        row[index[b]] += outer
        upper.append(row)
        rhs.append(float(d))
        if d < covalent[index[a]] + covalent[index[b]]:  # bonded: t·d − outer·(R_a+R_b) ≤ 0
            ratio.append(-row + np.eye(n + 1)[n] * float(d))
            objective -= 1e-3 * row / float(d)
    rows = upper + ratio
    floor = 1e-3  # Å: a radius must stay positive
    result = linprog(
        objective,
        A_ub=np.array(rows) if rows else None,
        b_ub=np.array(rhs + [0.0] * len(ratio)) if rows else None,
        bounds=[(floor, float(c)) for c in covalent] + [(0.0, 1.0 if ratio else 0.0)],
        method="highs",
    )
    if not result.success:
        close = min(shortest.items(), key=lambda kv: kv[1])
        raise ValueError(
            f"no switch radii fit the training data (shortest pair {close[0][0]}–{close[0][1]} "
            f"at {close[1]:.3f} Å): {result.message}"
        )
    return {e: float(r) for e, r in zip(elements, result.x[:n], strict=True)}


class ZBLRepulsion(EnergyTerm):
    name = "repulsion"
    pairwise = True  # each directed edge i→j adds ½ V(r_ij) S(r_ij) to atom i

    def __init__(
        self,
        elements: list[str],
        inner: float,
        outer: float,
        r_max: float,
        radii: dict[str, float] | None = None,
    ):
        super().__init__()
        z = np.array([atomic_numbers[e] for e in elements], dtype=np.float64)
        self.inner, self.outer, self.cap = float(inner), float(outer), float(r_max)
        radius = covalent_radii[z.astype(int)].astype(np.float64)  # unless given per element
        for k, element in enumerate(elements):
            if radii is not None and element in radii:
                radius[k] = float(radii[element])
        self.constants = Constants(charge=z, radius=radius)

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
        """Z and switch radius per element, inner, outer and cap (``zbl::Parameters``)."""

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
