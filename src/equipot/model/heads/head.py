"""One equivariant output head: backbone features → irreps → a Cartesian tensor per atom.

For atom i, head channels k and degrees l ≤ l_h:

    x_i^l[k] = (1/n̄) Σ_j R_l(r_ij)[k] (s_j W_s)[k] Y_l(r̂_ij)     message from neighbour scalars
             + Σ_t (h_i^(t),l W_t,l)[k]                           the backbone's own features
    a^l = x^l A_l,   b^l = x^l B_l                                 two channel mixings per l
    p^(l1 l2 → L)[k] = √(2L+1) Σ_{m1 m2} C^{l1 l2 L}_{m1 m2 M} a^l1_m1[k] b^l2_m2[k]   1 ≤ l1 ≤ l2
    y_i^(L,p) = Σ_src (src ⊙ g_i,src) W_src^(L,p),     g_i = MLP(s_i)   invariant gates
    T_i = scale · Qᵀ (y_i + b[z_i] on the even scalars)           (Q: :mod:`.cartesian`)

s_j are the last layer's invariant features. A target irrep (L, p) draws on x^L where its
natural parity (−1)^L equals p and on every product path of parity (−1)^(l1+l2) = p; the two
different mixings make antisymmetric couplings (a × b → 1e, the antisymmetric part of a Born
charge) non-zero. In SO(3) mode every path counts (:mod:`.collection` restores the parity).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from equipot.model.config import ModelConfig
from equipot.model.heads.cartesian import cartesian_basis, irreps_string
from equipot.model.heads.config import HeadConfig, target_irreps
from equipot.model.heads.features import BackboneFeatures
from equipot.nn.constants import Constants
from equipot.nn.coupling import clebsch_gordan
from equipot.nn.linear import NormalizedSiLU, init_weight, l_slice
from equipot.nn.radial import RadialMLP
from equipot.nn.spherical import SphericalHarmonics


def _sources(
    target: tuple[int, int], l_max: int, parity: bool
) -> list[tuple[str, int] | tuple[str, int, int]]:
    """The direct feature and the product paths that can give irrep ``target``."""
    L, p = target
    out: list = []
    if L <= l_max and (not parity or (-1) ** L == p):
        out.append(("x", L))
    for l1 in range(1, l_max + 1):
        for l2 in range(l1, l_max + 1):
            if abs(l1 - l2) <= L <= l1 + l2 and (not parity or (-1) ** (l1 + l2) == p):
                out.append(("p", l1, l2))
    return out


class TensorHead(nn.Module):
    """The head ``name`` of a model (see module docstring); ``forward`` → (T (N, 3ⁿ), q)."""

    def __init__(self, name: str, config: HeadConfig, model: ModelConfig):
        super().__init__()
        self.name, self.config = name, config
        self.atomic_numbers = model.atomic_numbers
        basis = cartesian_basis(config.tensor, config.pseudo)
        self.rank = basis.rank
        self.irreps = target_irreps(config)
        rows = basis.row_slices()
        keep = [k for k, ir in enumerate(basis.irreps) if not (config.traceless and ir[0] == 0)]
        outputs = list(self.irreps)
        self.outputs = outputs
        self.l_max = max(1, max(L for L, _ in outputs)) if config.l_max is None else config.l_max
        c, k = model.channels, config.channels
        self.types = list(dict.fromkeys(outputs))  # distinct (L, p), first-seen order
        self.plan = []
        for target in self.types:
            sources = _sources(target, self.l_max, model.parity)
            if not sources:
                kind = "O(3)" if model.parity else "SO(3)"
                raise ValueError(
                    f"head {name!r} needs irreps {irreps_string(tuple(outputs))}, but "
                    f"{irreps_string((target,))} cannot be formed from an {kind} model's features "
                    f"with l_max {self.l_max}"
                    + (" (pseudo-tensors need model parity: false)" if model.parity else "")
                )
            self.plan.append(sources)
        paths = sorted(
            {
                (s[1], s[2], t[0])
                for t, ss in zip(self.types, self.plan, strict=True)
                for s in ss
                if s[0] == "p"
            }
        )
        self.paths = paths
        self.constants = Constants(
            q=np.concatenate([basis.q[rows[i]] for i in keep], axis=0),
            **{
                f"cg_{a}_{b}_{L}": clebsch_gordan(a, b, L) * math.sqrt(2 * L + 1)
                for a, b, L in paths
            },
        )
        layer_lmax = [
            min(model.feature_l_max if t < model.num_layers - 1 else 0, self.l_max)
            for t in range(model.num_layers)
        ]
        self.harmonics = SphericalHarmonics(self.l_max)
        self.radial = RadialMLP(model.num_radial, list(config.radial_hidden), (self.l_max + 1) * k)
        self.neighbor_weight = nn.Parameter(init_weight(c, k))
        self.self_weights = nn.ParameterList(
            [nn.Parameter(init_weight(c, k, l + 1)) for l in layer_lmax]
        )
        self.left = nn.Parameter(init_weight(k, k, self.l_max))
        self.right = nn.Parameter(init_weight(k, k, self.l_max))
        widths = [len(s) * k for s in self.plan]
        self.gate = nn.ParameterList(
            [
                nn.Parameter(init_weight(c, config.gate_hidden)),
                nn.Parameter(init_weight(config.gate_hidden, sum(widths))),
            ]
        )
        self.activation = NormalizedSiLU()
        self.widths = widths
        self.mixing = nn.ParameterList(
            [
                nn.Parameter(init_weight(w, outputs.count(t)))
                for w, t in zip(widths, self.types, strict=True)
            ]
        )
        self.scalar_outputs = [i for i, ir in enumerate(outputs) if ir == (0, 1)]
        self.bias = nn.Parameter(
            torch.zeros(len(model.elements), len(self.scalar_outputs), dtype=torch.float64)
        )
        # Backbone features are far from unit size (their scale is the energy's business);
        # training sets this gain from the data (Heads.normalise_inputs) before it starts.
        self.input_gain = nn.Parameter(torch.ones((), dtype=torch.float64))
        # Fixed point charges per element (a vector head's Σ q_i r_i): environment-dependent
        # charges would make a crystal's Born charges depend on which periodic image each
        # atom is placed in; charge flow is carried by the atomic dipoles instead.
        self.charges = (
            nn.Parameter(torch.zeros(len(model.elements), dtype=torch.float64))
            if config.charges
            else None
        )

    @property
    def dim(self) -> int:
        return sum(2 * L + 1 for L, _ in self.irreps)

    def features(self, f: BackboneFeatures) -> list[Tensor]:
        """x^l (N, 2l+1, K) for l = 0..l_h."""
        gain = self.input_gain
        s = f.scalars * gain
        n, slots = f.neighbors.shape
        k = self.config.channels
        Y = self.harmonics(f.slot_vectors)  # (N, S, (l_h+1)²)
        R = self.radial(f.radial_basis).view(n, slots, self.l_max + 1, k)
        phi = (s @ self.neighbor_weight)[f.neighbors]  # (N, S, K)
        w = R * (phi * f.inv_avg_neighbors).unsqueeze(2)
        x = [
            torch.bmm(Y[:, :, l_slice(l)].transpose(1, 2), w[:, :, l])
            for l in range(self.l_max + 1)
        ]
        for h, weights in zip(f.nodes, self.self_weights, strict=True):
            for l in range(weights.shape[0]):
                x[l] = x[l] + (h[:, l_slice(l)] * gain) @ weights[l]
        return x

    def forward(self, f: BackboneFeatures) -> tuple[Tensor, Tensor | None]:
        """Per-atom tensors T (N, 3, …, 3) and, with ``charges``, q_z(i) (N,) (before any
        constraint; :mod:`.collection` imposes Σq = Q and the sum rule)."""
        x = self.features(f)
        a = [None] + [x[l] @ self.left[l - 1] for l in range(1, self.l_max + 1)]
        b = [None] + [x[l] @ self.right[l - 1] for l in range(1, self.l_max + 1)]
        products = {
            (l1, l2, L): torch.einsum(
                "abm,nak,nbk->nmk", self.constants.get(f"cg_{l1}_{l2}_{L}", x[0]), a[l1], b[l2]
            )
            for l1, l2, L in self.paths
        }
        first, last = self.gate
        s = f.scalars * self.input_gain
        gates = torch.split(self.activation(s @ first) @ last, self.widths, dim=1)
        per_type = []
        for (L, _), sources, gate, w in zip(self.types, self.plan, gates, self.mixing, strict=True):
            stacked = torch.cat(
                [x[s[1]] if s[0] == "x" else products[(s[1], s[2], L)] for s in sources], dim=2
            )
            per_type.append((stacked * gate.unsqueeze(1)) @ w)  # (N, 2L+1, copies)
        used = [0] * len(self.types)
        blocks = []
        for ir in self.outputs:
            t = self.types.index(ir)
            blocks.append(per_type[t][:, :, used[t]])
            used[t] += 1
        y = torch.cat(blocks, dim=1)
        if self.scalar_outputs:
            offsets = [sum(2 * L + 1 for L, _ in self.outputs[:i]) for i in self.scalar_outputs]
            bias = torch.zeros_like(y).index_copy(
                1, torch.tensor(offsets, device=y.device), self.bias[f.species.index]
            )
            y = y + bias
        y = self.config.scale * y
        d = self.dim
        tensor = (y[:, :d] @ self.constants.get("q", y)).view(-1, *(3,) * self.rank)
        charges = None
        if self.charges is not None:
            charges = self.config.scale * self.charges[f.species.index]
        return tensor, charges
