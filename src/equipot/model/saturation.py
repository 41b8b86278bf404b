"""A bound on each atom's network energy: ε_i → c·tanh(ε_i/c).

The network part of an atomic energy, ε_i = scale · Σ_t y_i^(t), is a polynomial of high
degree in the neighbour density (correlation order ν, T layers: degree ~ν^T in the A-basis).
Inside the training data that is what makes it accurate; outside it grows like one — a
methyl-acetate model trained on 300 K MD put 152,902 eV of network energy on the molecule
compressed to 0.75 of its size (GFN2-xTB: +43 eV). The map

    s(ε) = c · tanh(ε / c)        s(0) = 0, s'(0) = 1, |s| < c

keeps every atom's many-body energy within ±c. It is odd and smooth (C^∞), so:

* an isolated atom (ε = 0) keeps its energy E0 exactly, and the dissociation limit is as
  without the map;
* forces stay the exact gradient of the energy (autograd through s, s'(ε) = 1 − tanh²(ε/c));
* equivariance is untouched (s acts on an invariant scalar).

What it does not do is make extrapolation right: a compressed structure still gets whatever
the network says, only clipped to at most c per atom above the isolated atoms; the steep part
of the repulsion is the ZBL term's (model/terms/zbl.py). The network learns through the map
(training uses it), so in-distribution energies are reproduced as well as the network can with
the map in place; ``c`` should be several times the typical |ε_i| (training sets it from the
mean binding energy per atom, see ``equipot.train.config.ModelOptions.saturation``).

Execution: the C++ inference engine and the fused training step evaluate the unbounded network
only, so a model with a saturation runs on the PyTorch path (same function, slower); the
packed engine (LAMMPS export) refuses such a model.
"""

from __future__ import annotations

import torch
from torch import Tensor


def saturate(energy: Tensor, bound: float | None) -> Tensor:
    """c·tanh(ε/c) elementwise for ``bound`` c; ``energy`` unchanged for ``None``."""
    if bound is None:
        return energy
    return bound * torch.tanh(energy / bound)
