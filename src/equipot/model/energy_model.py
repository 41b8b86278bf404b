"""The equipot model: an energy function of an :class:`~equipot.graph.AtomicGraph`.

Forces, stress, Hessians and everything else derive from this energy by autograd
(:mod:`equipot.physics.derivatives`); no layer contains force code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase.data import chemical_symbols
from torch import Tensor, nn

from equipot.geometry.edges import edge_vectors
from equipot.graph import AtomicGraph
from equipot.model.config import ModelConfig
from equipot.model.engine_pass import inference_pass as engine_inference_pass
from equipot.model.heads.collection import Heads
from equipot.model.heads.features import BackboneFeatures
from equipot.model.inference import EngineSlot
from equipot.model.layers import InteractionLayer
from equipot.model.long_range import LongRange
from equipot.model.saturation import saturate
from equipot.model.terms import TermInputs, build_terms
from equipot.nn.constants import Constants
from equipot.nn.edge_features import EdgeFeatures
from equipot.nn.feature_ceiling import FeatureCeiling
from equipot.nn.linear import SILU_SCALE, init_weight
from equipot.nn.neighborhood import PaddedNeighbors, pad_neighbors
from equipot.nn.radial_floor import RadialFloor
from equipot.nn.species import Species
from equipot.uq.store import Uncertainty


@dataclass
class ModelOutput:
    energy: Tensor  # (S,) eV per system
    atomic_energies: Tensor  # (N,) eV per atom
    features: Tensor | None = None  # (N, D) readout features, if asked for (see forward)
    outputs: dict[str, Tensor] = field(default_factory=dict)  # tensor heads (model.heads)
    charges: Tensor | None = None  # (N,) e: the long-range term's charges (None: local model)
    # from inference_pass: the gradient that does not go through the edges (the long-range
    # electrostatics' direct dependence on positions and cell): ∂E/∂r (N, 3), ∂E/∂ε (S, 3, 3)
    direct_gradient: tuple[Tensor, Tensor | None] | None = None


class EnergyModel(nn.Module):
    """E(graph): many-body E(3)-equivariant message passing (MACE class), see ModelConfig."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        n_el = len(c.elements)
        index = torch.full((119,), -1, dtype=torch.int64)
        index[torch.tensor(c.atomic_numbers)] = torch.arange(n_el)
        self.register_buffer("species_of_z", index, persistent=False)
        self.constants = Constants(e0=np.array([c.e0.get(e, 0.0) for e in c.elements]))

        self.embedding = nn.Parameter(init_weight(n_el, c.channels) * n_el**0.5)
        self.edge_features = EdgeFeatures(c.r_max, c.l_max, c.num_radial, c.envelope_exponent)
        self.layers = nn.ModuleList(
            InteractionLayer(
                num_elements=n_el,
                channels=c.channels,
                lmax_in=0 if t == 0 else c.feature_l_max,
                lmax_sh=c.l_max,
                lmax_out=c.feature_l_max if t < c.num_layers - 1 else 0,
                correlation=c.correlation,
                num_radial=c.num_radial,
                radial_hidden=list(c.radial_hidden),
                parity=c.parity,
                residual=t > 0,
                readout_hidden=c.readout_hidden if t == c.num_layers - 1 else None,
            )
            for t in range(c.num_layers)
        )
        self.long_range = (  # E += electrostatics of charges from the final features
            LongRange(c.long_range, c.channels, n_el, c.r_max) if c.long_range else None
        )
        self.terms = nn.ModuleDict(build_terms(c))  # repulsion, ...: model/terms/
        self.radial_floor = (  # the network reads no distance shorter than its data's
            RadialFloor(c.elements, c.radial_floor, c.radial_floor_softness)
            if c.radial_floor
            else None
        )
        self.feature_ceiling = (  # no layer's messages larger than on the training data
            FeatureCeiling(c.feature_ceiling, c.feature_ceiling_softness)
            if c.feature_ceiling
            else None
        )
        if c.feature_ceiling:
            degrees = [layer.edge.lmax_out + 1 for layer in self.layers]
            given = [len(m) for m in c.feature_ceiling]
            if given != degrees:
                raise ValueError(
                    f"feature_ceiling has {given} degrees per layer, the model's layers {degrees}"
                )
        self.engine_slot = EngineSlot()  # C++ inference engine, built on first use
        self.heads = Heads(c) if c.heads else None  # tensor outputs, field coupling

    def set_execution(self, *, kernels: bool, memory_efficient: bool) -> EnergyModel:
        """Choose how the same function is computed (results agree to rounding):

        * ``kernels``: fused CPU kernels for the tensor product and symmetric contraction
          (first derivatives; double derivatives fall back to the PyTorch reference). Turn
          off for training on forces, where every backward pass is differentiated again.
          With frozen weights on the CPU, energies and first derivatives then come from the
          whole-model C++ pass (:mod:`equipot.model.inference`).
        * ``memory_efficient``: evaluate large systems in chunks of atoms and recompute them
          in the backward pass instead of storing per-edge intermediates.
        """
        self.fused_inference = kernels
        self.edge_features.fused = kernels
        for layer in self.layers:
            layer.edge.tensor_product.use_kernel = kernels
            layer.node.product.use_kernel = kernels
            layer.memory_efficient = memory_efficient
        return self

    def save(self, path, extra: dict | None = None, **heads):
        """Write this model to a file (see :func:`equipot.model.io.save_model`)."""
        from equipot.model.io import save_model

        return save_model(self, path, extra, **heads)

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype

    def species(self, atomic_numbers: Tensor) -> Tensor:
        """Map atomic numbers to model element indices; unknown elements are an error."""
        if atomic_numbers.numel() and (atomic_numbers.min() < 1 or atomic_numbers.max() > 118):
            bad = int(torch.nonzero((atomic_numbers < 1) | (atomic_numbers > 118))[0])
            raise ValueError(f"atom {bad} has invalid atomic number {int(atomic_numbers[bad])}")
        species = self.species_of_z[atomic_numbers]
        if atomic_numbers.numel() and bool((species < 0).any()):
            bad = int(torch.nonzero(species < 0)[0])
            symbol = chemical_symbols[int(atomic_numbers[bad])]
            raise ValueError(
                f"atom {bad} is {symbol}, which this model does not know "
                f"(model elements: {', '.join(self.config.elements)})"
            )
        return species

    fused_inference: bool = True  # see set_execution
    uncertainty: Uncertainty | None = None  # fits and calibration (equipot.uq), saved with it
    # Neighbour slots per chunk of the engine's edge block: bounds the per-edge buffers of
    # large systems (radial-MLP activations, R), which are then recomputed in the backward.
    inference_chunk_slots: int = 16384
    # Nodes of the engine's tabulated radial functions (0: evaluate the radial MLP exactly);
    # see equipot.model.inference for the interpolation and its error.
    inference_radial_table: int = 1024

    def _prepare(self, graph: AtomicGraph) -> tuple[Tensor, PaddedNeighbors, Tensor, Tensor]:
        """Validated element indices, the padded neighbour layout, edge vectors (E, 3) and the
        same vectors in slots (N, K, 3), empty slots placed beyond the cutoff."""
        c = self.config
        if graph.cutoff and graph.cutoff < c.r_max - 1e-9:
            raise ValueError(
                f"graph built with cutoff {graph.cutoff} Å < model r_max {c.r_max} Å: "
                "neighbours would be missing"
            )
        species = self.species(graph.atomic_numbers)
        padded = pad_neighbors(graph.edge_index, graph.num_atoms)
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.batch, graph.edge_index, graph.edge_shift
        )
        far = vectors.new_tensor([2.0 * c.r_max, 0.0, 0.0])
        return species, padded, vectors, padded.scatter(vectors, fill=far)

    def floor_holds(self, graph: AtomicGraph) -> bool:
        """Whether the radial floor changes any edge of ``graph`` (an edge shorter than the
        training data's shortest of its element pair): the engine paths that do not apply the
        floor themselves (second order, the fused training step) then take autograd."""
        if self.radial_floor is None:
            return False
        with torch.no_grad():
            vectors = edge_vectors(
                graph.positions, graph.cell, graph.batch, graph.edge_index, graph.edge_shift
            )
            species = self.species(graph.atomic_numbers)
            return self.radial_floor.holds_edges(vectors, species, graph.edge_index)

    def _system_energy(self, graph: AtomicGraph, atomic: Tensor) -> Tensor:
        if graph.num_systems == 1:
            return atomic.sum().unsqueeze(0)
        energy = torch.zeros(graph.num_systems, dtype=atomic.dtype, device=atomic.device)
        return energy.index_add(0, graph.batch, atomic)

    def inference_pass(
        self,
        graph: AtomicGraph,
        gradient: bool = True,
        features: bool = False,
        strain: bool = False,
    ) -> tuple[ModelOutput, Tensor, Tensor | None] | None:
        """Energies and ∂E/∂r_ij (E, 3) per edge from the C++ engine, with the edge vectors
        r_ij (and the readout features, see :meth:`forward`); ``None`` where the engine does
        not apply (weights that require gradients, other devices or dtypes, kernels switched
        off or unavailable): use :meth:`forward` then. Long-range models add the rest of the
        gradient as ``out.direct_gradient`` (with ``strain``, its strain derivative too)."""
        return engine_inference_pass(self, graph, gradient, features, strain)

    def readout_weights(self) -> Tensor:
        """θ (D,): the last readout matrix of every layer, side by side. With the features φ̃
        of :meth:`forward`, ``E_i = E0[z_i] + shift·ρ_i + E_i^terms + φ̃_i·θ`` exactly (not
        affine in θ with ``config.saturation``: there ``E_i`` has c·tanh(φ̃_i·θ/c))."""
        return torch.cat([layer.node.readout[-1][:, 0] for layer in self.layers])

    def _engine_feature_factors(self, like: Tensor) -> Tensor:
        key = (like.dtype, like.device)  # constant per model: built once, not every MD step
        cache = self.__dict__.setdefault("_feature_factor_cache", {})
        if key not in cache:
            cache[key] = self._feature_factors().to(like)
        return cache[key]

    def _feature_factors(self) -> Tensor:
        factors = [
            torch.full(
                (len(layer.node.readout[-1]),),
                self.config.scale * (SILU_SCALE if len(layer.node.readout) > 1 else 1.0),
                dtype=torch.float64,
            )
            for layer in self.layers
        ]
        return torch.cat(factors)

    def forward(self, graph: AtomicGraph, features: bool = False) -> ModelOutput:
        """Energies and tensor-head outputs; with ``features``, also φ̃_i = scale·[a_i^(0), …,
        a_i^(T−1)] (N, D), a^(t) the input of layer t's last readout matrix, so that the atomic
        energy is affine in the readout weights θ (:meth:`readout_weights`): last-layer
        uncertainty and latent distances (:mod:`equipot.uq`) are functions of these features."""
        atomic, backbone = self.local_energies(graph)
        charges = None
        if self.long_range is not None:  # charges from the last layer's scalars
            long_range = self.long_range(graph, backbone.scalars, backbone.species.index)
            atomic, charges = atomic + long_range.atomic_energies, long_range.charges
        outputs = {}
        if self.heads is not None:
            atomic, outputs = self.heads(graph, atomic, backbone, self.local_energies)
        energy = self._system_energy(graph, atomic)
        feats = None
        if features:
            scale = self.config.scale
            feats = torch.cat(
                [
                    scale * layer.node.readout_input(h)
                    for layer, h in zip(self.layers, backbone.nodes, strict=True)
                ],
                1,
            )
        return ModelOutput(
            energy=energy, atomic_energies=atomic, features=feats, outputs=outputs, charges=charges
        )

    def local_energies(self, graph: AtomicGraph) -> tuple[Tensor, BackboneFeatures]:
        """Atomic energies (N,) of the local model and the features heads read."""
        c = self.config
        n = graph.num_atoms
        index, padded, edge_list, vectors = self._prepare(graph)
        species = Species.of(index, len(c.elements))
        seen = vectors  # what the network reads: below the radial floor, held (nn/radial_floor)
        if self.radial_floor is not None:
            seen = self.radial_floor(vectors, index, padded.neighbors)
        Y, radial, envelope = self.edge_features(seen)  # (N,K,D), (N,K,n_radial), (N,K)
        inv_avg = 1.0 / c.avg_num_neighbors

        h = self.embedding[species.index].unsqueeze(1)  # (N, 1, C)
        interaction = torch.zeros(n, dtype=h.dtype, device=h.device)
        nodes = []
        ceiling = self.feature_ceiling
        for t, layer in enumerate(self.layers):
            held = None if ceiling is None else (lambda A, t=t: ceiling(t, A))
            h, y = layer(h, species, Y, radial, padded.neighbors, padded.counts, inv_avg, held)
            interaction = interaction + y
            nodes.append(h)
        coordination = envelope.sum(1) * inv_avg
        atomic = (
            self.constants.get("e0", h)[species.index]
            + saturate(c.scale * interaction, c.saturation)
            + c.shift * coordination
        )
        inputs = TermInputs(graph, index, edge_list)
        for term in self.terms.values():
            atomic = atomic + term(inputs)
        backbone = BackboneFeatures(species, padded.neighbors, vectors, radial, nodes, inv_avg)
        return atomic, backbone
