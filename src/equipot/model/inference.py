"""Whole-model inference pass: energy and ∂E/∂r_ij for every edge in one C++ call.

For a frozen model on the CPU, :class:`InferenceEngine` (``kernels/inference.cpp``) evaluates
exactly the function of :class:`~equipot.model.energy_model.EnergyModel` — same weights, same
operations, same order of the per-degree products — and its first-order backward pass:

    E = Σ_i E_i(r_ij),     g_ij = ∂E/∂r_ij   (edge vectors r_ij = r_j − r_i + S_ij·cell)

Forces and the virial follow from the edge gradients (:mod:`equipot.physics.derivatives`).

Radial functions. R(r) = MLP(b(r)·u(r)) depends on the distance alone, so by default the engine
tabulates it once per weight set on a uniform grid of ``inference_radial_table`` nodes over
[0, r_max] — values, first and second derivatives by second-order forward mode in float64 — and
interpolates with quintic Hermite polynomials (C²: all three exact at the nodes). That
replaces the largest matrix products per edge (num_radial → hidden → paths × channels) by six
multiply–adds per output. Forces stay the exact derivative of the energy the engine computes;
the interpolation error is O(h⁶) in R and O(h⁵) in R' (the tests bound the difference from
the exact MLP at 1e-9 relative with 1,024 nodes, far below float32 rounding).
``inference_radial_table = 0`` evaluates the MLP instead (agreement with the modules to
rounding, used by the tests).
The point is speed where per-operation overhead dominates: a 9-atom molecule needs ~250
PyTorch operations and an autograd graph for one energy + forces evaluation, each costing
more than its arithmetic. Double derivatives (training on forces, Hessians) keep using the
differentiable modules; the tests compare both executions to rounding.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from equipot.kernels import cpu_kernels
from equipot.nn.constants import parameter_list
from equipot.nn.linear import SILU_SCALE
from equipot.nn.spherical import monomial_coefficients

if TYPE_CHECKING:
    from equipot.model.energy_model import EnergyModel


@functools.cache
def unique_monomials(lmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Exponents (U, 3) of the distinct monomials û_x^a û_y^b û_z^c (a+b+c ≤ lmax) and the
    coefficients (U, (lmax+1)²) with Y(û) = Σ_m coeff[m] · monomial_m(û).

    :func:`monomial_coefficients` uses every ordered product (u⊗u⊗u has 27 entries, 10
    distinct); repeated products are folded into one row.
    """
    full = monomial_coefficients(lmax)
    rows: dict[tuple[int, int, int], np.ndarray] = {}
    start = 0
    for degree in range(lmax + 1):
        for flat in range(3**degree):
            axes = np.unravel_index(flat, (3,) * degree) if degree else ()
            key = tuple(int(sum(1 for a in axes if a == axis)) for axis in range(3))
            rows.setdefault(key, np.zeros(full.shape[1]))
            rows[key] = rows[key] + full[start + flat]
        start += 3**degree
    exponents = np.array(list(rows), dtype=np.int64)
    return exponents, np.stack(list(rows.values()))


def _engine_key(model: EnergyModel, dtype: torch.dtype) -> tuple:
    params = parameter_list(model)
    options = (model.config.avg_num_neighbors, model.inference_chunk_slots)
    versions = tuple((p._version, p.data_ptr()) for p in params)
    return (dtype, *options, model.inference_radial_table, *versions)


class EngineSlot:
    """Holds a model's compiled engine; copies and pickles of the model start empty."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.engine = None

    def __deepcopy__(self, memo: dict) -> EngineSlot:
        return EngineSlot()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


def radial_table(model: EnergyModel, layer_index: int, nodes: int) -> tuple[Tensor, ...]:
    """R, h·R' and h²·R'' at r_k = k·h, h = r_max/(nodes−1), in float64.

    Second-order forward mode written out: the enveloped basis x = √(2/r_c)·s(r)·u(r) with
    s = sin(f r)/r, then through every layer z = x W (linear: each order alike) and SiLU
    y = z σ(z): y' = φ' z', y'' = φ'' z'² + φ' z'' with φ' = σ(1 + z(1−σ)) and
    φ'' = σ(1−σ)(2 + z(1−2σ)).
    """
    c = model.config
    bessel = model.edge_features.radial_basis
    mlp, _ = model.layers[layer_index].edge.frozen_weights(1.0 / c.avg_num_neighbors)
    weights = [w.detach().to(torch.float64) for w in mlp]
    f = torch.as_tensor(bessel.constants.array("frequencies"), dtype=torch.float64)
    step = c.r_max / (nodes - 1)
    r = (torch.arange(nodes, dtype=torch.float64) * step).unsqueeze(1)

    s, ds, d2s = _sinc_and_derivatives(f, r)
    u, du, d2u = _envelope_and_derivatives(r, c.r_max, c.envelope_exponent)
    x = [s * u, ds * u + s * du, d2s * u + 2.0 * ds * du + s * d2u]
    x = [bessel.prefactor * t @ weights[0] for t in x]
    for w in weights[1:]:
        z, dz, d2z = x
        sig = torch.sigmoid(z)
        d1 = sig * (1.0 + z * (1.0 - sig))
        d2 = sig * (1.0 - sig) * (2.0 + z * (1.0 - 2.0 * sig))
        x = [(z * sig) @ w, (d1 * dz) @ w, (d2 * dz * dz + d1 * d2z) @ w]
    values, slopes, curvatures = x
    for t in x:  # the cutoff: R, R', R'' vanish (envelope)
        t[-1] = 0.0
    return values, slopes * step, curvatures * step**2


def _sinc_and_derivatives(f: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """s = sin(f r)/r and its first two r-derivatives (a Taylor series where f r is small)."""
    fr = f * r
    sin, cos = torch.sin(fr), torch.cos(fr)
    safe = torch.where(fr < 0.05, torch.ones_like(r), r)
    exact = (
        sin / safe,
        (fr * cos - sin) / safe**2,
        (2.0 * sin - 2.0 * fr * cos - fr * fr * sin) / safe**3,
    )
    x2 = fr * fr
    series = (
        f * (1.0 - x2 / 6.0 + x2 * x2 / 120.0),
        f * f * fr * (-1.0 / 3.0 + x2 / 30.0),
        f**3 * (-1.0 / 3.0 + x2 / 10.0 - x2 * x2 / 168.0),
    )
    small = fr < 0.05
    return tuple(torch.where(small, a, b) for a, b in zip(series, exact, strict=True))


def _envelope_and_derivatives(r: Tensor, r_max: float, p: int) -> tuple[Tensor, Tensor, Tensor]:
    """u(d) = 1 − a d^p + b d^(p+1) − c d^(p+2), d = r/r_max (equipot.nn.radial), and its first
    two r-derivatives; all zero beyond the cutoff."""
    a, b, c = (p + 1) * (p + 2) / 2, p * (p + 2), p * (p + 1) / 2
    d = r / r_max
    u = 1.0 - a * d**p + b * d ** (p + 1) - c * d ** (p + 2)
    du = (-a * p * d ** (p - 1) + b * (p + 1) * d**p - c * (p + 2) * d ** (p + 1)) / r_max
    d2u = (
        -a * p * (p - 1) * d ** (p - 2)
        + b * (p + 1) * p * d ** (p - 1)
        - c * (p + 2) * (p + 1) * d**p
    ) / r_max**2
    inside = d < 1.0
    return tuple(torch.where(inside, t, torch.zeros_like(t)) for t in (u, du, d2u))


def per_component(weights) -> Tensor:
    """Per-degree weights [W_0, W_1, ...] → one matrix per spherical component (D, ...):
    component d = (l, m) gets W_l, so a linear map is one batched product."""
    return torch.cat([w.detach().expand(2 * l + 1, *w.shape) for l, w in enumerate(weights)])


def _component_mixing(tp, mixing: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The engine's layout of the tensor-product output and the path mixing.

    Path k ending in degree L, output component M, writes column (L² + M)·P + rank_k, with
    rank_k its position among the paths ending in L and P the most paths of any L. Columns of
    one component then sit side by side, and the mixing of all components is one batched
    product with weights (D_A, P·C, C), zero rows for the missing paths of smaller L.
    """
    width = max(tp.paths_per_l)
    channels = mixing[0].shape[1]
    cols = np.full((tp.num_paths, 7), -1, dtype=np.int64)
    rank = [0] * len(tp.paths_per_l)
    for k, (_, _, L) in enumerate(tp.paths):
        for M in range(2 * L + 1):
            cols[k, M] = (L * L + M) * width + rank[L]
        rank[L] += 1
    mix = torch.zeros(len(tp.paths_per_l) ** 2, width * channels, channels, dtype=torch.float64)
    for L, w in enumerate(mixing):
        mix[L * L : (L + 1) ** 2, : w.shape[0]] = w.detach().to(torch.float64)
    return torch.as_tensor(cols), mix


# Layout of the packed engine tensors; equipot::kEngineFormat (kernels/engine_tensors.h) reads
# the same number. Bump both when the layout changes: model files carrying a packed engine of
# another format are then refused with a message, never misread. 2: the extra energy terms'
# parameters (``term.<name>.<key>``). 3: the radial floor (``floor.table``, ``floor.softness``).
ENGINE_FORMAT = 4


def pack_engine(model: EnergyModel, dtype: torch.dtype) -> dict[str, Tensor]:
    """A frozen model's weights (in ``dtype``), CG tables and radial tables as the named tensors
    the C++ ``InferenceEngine`` is built from (``engine_from_tensors``): the one packing used
    by the Python calculator and by the LAMMPS plugin (which reads them from a model file).

    Scalars are one-element tensors, lists ``name.0, name.1, ...``; integers are int64. The
    parameters of extra energy terms that have them (:meth:`EnergyTerm.engine_tensors`) come
    as ``term.<name>.<key>``: the engine evaluates the network only; the calculator adds the
    terms itself, the LAMMPS plugin from these tensors.
    """
    c = model.config
    if c.saturation is not None:
        raise ValueError(
            f"this model bounds its network energy (model.saturation = {c.saturation} eV), "
            "which the C++ engine (calculator fast path, LAMMPS plugin) does not implement: "
            "use it from Python (EquipotCalculator takes the PyTorch path by itself)"
        )
    nodes = model.inference_radial_table
    if nodes != 0 and nodes < 16:
        raise ValueError(f"inference_radial_table must be 0 (no table) or ≥ 16 nodes, got {nodes}")
    like = torch.empty(0, dtype=dtype)
    index_like = torch.empty(0, dtype=torch.int64)

    def cast(t: Tensor) -> Tensor:
        return t.detach().to(dtype).contiguous()

    def real(x: float) -> Tensor:
        return torch.tensor([float(x)], dtype=torch.float64)

    def integer(x: int) -> Tensor:
        return torch.tensor([int(x)], dtype=torch.int64)

    exponents, coefficients = unique_monomials(c.l_max)
    radial = model.edge_features.radial_basis
    inv_avg = 1.0 / c.avg_num_neighbors
    packed = {
        "format": integer(ENGINE_FORMAT),
        "atomic_numbers": torch.tensor(c.atomic_numbers, dtype=torch.int64),
        "r_max": real(c.r_max),
        "envelope_exponent": integer(c.envelope_exponent),
        "frequencies": torch.as_tensor(radial.constants.array("frequencies")).to(torch.float64),
        "prefactor": real(radial.prefactor),
        "sh_coefficients": torch.as_tensor(coefficients, dtype=dtype),
        "sh_exponents": torch.as_tensor(exponents.reshape(-1), dtype=torch.int64),
        "lmax_sh": integer(c.l_max),
        "inv_avg": real(inv_avg),
        "scale": real(c.scale),
        "shift": real(c.shift),
        "e0": cast(model.constants.get("e0", like)),
        "embedding": cast(model.embedding),
        "chunk_slots": integer(model.inference_chunk_slots),
        "table_step": real(c.r_max / max(nodes - 1, 1)),
        "num_layers": integer(len(model.layers)),
    }
    if model.radial_floor is not None:  # applied by the hosts to the engine's input edges
        packed["floor.table"] = model.radial_floor.constants.get("floor", like.double())
        packed["floor.softness"] = real(model.radial_floor.softness)
    for name, term in model.terms.items():
        tensors = term.engine_tensors()
        if tensors is not None:
            packed.update({f"term.{name}.{key}": t.contiguous() for key, t in tensors.items()})
    empty = torch.empty(0, dtype=dtype)
    ceiling = model.feature_ceiling
    if ceiling is not None:  # applied by the engine itself
        packed["ceiling_softness"] = real(ceiling.softness)
    for index, layer in enumerate(model.layers):
        edge, node = layer.edge, layer.node
        tp, product = edge.tensor_product, node.product
        mlp, mixing = edge.frozen_weights(inv_avg)
        factors, outputs, values = product.kernel_terms(like)
        path_cols, mix = _component_mixing(tp, mixing)
        tables = tp.kernel_tables(index_like, like)
        tables[1] = path_cols
        sc = node.self_connection
        skip, skip_t = empty, empty
        if sc is not None:  # (l+1, E, C_in, C_out) → per l: (C_in, E·C_out) and (C_out, E·C_in)
            w = sc.weights.detach()
            skip = per_component([x.permute(1, 0, 2).flatten(1) for x in w])
            skip_t = per_component([x.transpose(1, 2).permute(1, 0, 2).flatten(1) for x in w])
        *hidden, last = node.readout
        readout = [cast(w) for w in hidden] + [cast(last * SILU_SCALE if hidden else last)]
        table = radial_table(model, index, nodes) if nodes else (empty, empty, empty)
        up = empty if layer.linear_up is None else per_component(layer.linear_up.weights)
        fields = {
            "up": cast(up),
            "table_y": cast(table[0]),
            "table_m": cast(table[1]),
            "table_s": cast(table[2]),
            "mix": cast(mix),
            "num_columns": integer(mix.shape[0] * mix.shape[1] // mix.shape[2]),
            "dim_b": integer(product.dim_out),
            "out": cast(per_component(node.linear_out.weights)),
            "sc": cast(skip),
            "sc_t": cast(skip_t),
            "ceiling": empty if ceiling is None else cast(ceiling.top(index, like.double())),
        }
        lists = {
            "mlp": [cast(w) for w in mlp],
            "tp_tables": [t.contiguous() for t in tables],
            "sc_factors": list(factors),
            "sc_outputs": list(outputs),
            "sc_values": [cast(v) for v in values],
            "readout": readout,
        }
        for name, items in lists.items():
            fields.update({f"{name}.{i}": t.contiguous() for i, t in enumerate(items)})
        packed.update({f"layer{index}.{name}": t for name, t in fields.items()})
    return packed


def build_engine(model: EnergyModel, dtype: torch.dtype):
    """The C++ ``InferenceEngine`` of a frozen model's weights in ``dtype``."""
    return cpu_kernels().engine_from_tensors(pack_engine(model, dtype))


def engine_for(model: EnergyModel, dtype: torch.dtype):
    """The model's engine for ``dtype``, rebuilt when its weights changed."""
    slot: EngineSlot = model.engine_slot
    key = _engine_key(model, dtype)
    if slot.engine is None or slot.key != key:
        slot.engine, slot.key = build_engine(model, dtype), key
    return slot.engine
