"""Edge-space Hessian-vector products of the parameter-free energy terms (model/terms/)."""

from __future__ import annotations

import torch

from equipot.calculator import atoms_to_graph
from equipot.model.terms import EnergyTerm, TermInputs
from equipot.model.terms.zbl import ZBLRepulsion
from tests.conftest import ELEMENTS, random_cluster


class CoupledEdges(EnergyTerm):
    """A term that is not pairwise: atom i gets (Σ_{e: i_e = i} |r_e|²)², coupling its edges."""

    name = "coupled"

    def forward(self, inputs: TermInputs) -> torch.Tensor:
        graph, r = inputs.graph, inputs.vectors
        sums = torch.zeros(graph.num_atoms, dtype=r.dtype).index_add(
            0, graph.edge_index[0], (r * r).sum(1)
        )
        return 0.01 * sums**2


def _inputs(scale: float = 1.0) -> TermInputs:
    atoms = random_cluster(6, seed=4)
    atoms.positions *= scale  # scale < 1 puts pairs inside ZBL's switch region
    graph = atoms_to_graph(atoms, 3.5, torch.float64)
    species = torch.tensor([ELEMENTS.index(s) for s in atoms.get_chemical_symbols()])
    src, dst = graph.edge_index
    vectors = graph.positions[dst] - graph.positions[src] + graph.edge_shift @ graph.cell[0]
    return TermInputs(graph, species, vectors)


def _reference(term: EnergyTerm, inputs: TermInputs, tangents: torch.Tensor) -> torch.Tensor:
    """Dense edge-space Hessian by torch.autograd.functional.hessian, applied to tangents."""

    def energy(v):
        return term(TermInputs(inputs.graph, inputs.species, v)).sum()

    e = inputs.vectors.shape[0]
    h = torch.autograd.functional.hessian(energy, inputs.vectors).reshape(3 * e, 3 * e)
    return (tangents.reshape(len(tangents), -1) @ h.T).reshape(tangents.shape)


def test_pairwise_blocks_and_general_path_equal_the_dense_hessian():
    zbl = ZBLRepulsion(ELEMENTS, 0.5, 0.75, 3.5)
    inputs = _inputs(scale=0.45)
    assert float(zbl(inputs).abs().sum()) > 1.0  # pairs inside the repulsion
    tangents = torch.randn(4, inputs.vectors.shape[0], 3, dtype=torch.float64)
    reference = _reference(zbl, inputs, tangents)
    blocks = zbl.edge_hessian_vectors(inputs, tangents)
    zbl.pairwise = False  # the general path (one double backward per direction)
    general = zbl.edge_hessian_vectors(inputs, tangents)
    scale = float(reference.abs().max())
    assert scale > 0
    assert float((blocks - reference).abs().max()) <= 1e-10 * scale
    assert float((general - reference).abs().max()) <= 1e-10 * scale


def test_coupled_term_uses_the_general_path_exactly():
    term = CoupledEdges()
    inputs = _inputs()
    tangents = torch.randn(3, inputs.vectors.shape[0], 3, dtype=torch.float64)
    reference = _reference(term, inputs, tangents)
    out = term.edge_hessian_vectors(inputs, tangents)
    assert float((out - reference).abs().max()) <= 1e-10 * float(reference.abs().max())
    term.pairwise = True  # wrongly declared pairwise: the block-diagonal shortcut misses couplings
    assert float((term.edge_hessian_vectors(inputs, tangents) - reference).abs().max()) > 1e-3


def test_no_edge_in_range_gives_zeros():
    zbl = ZBLRepulsion(ELEMENTS, 0.5, 0.75, 3.5)
    inputs = _inputs(scale=2.5)  # pairs ≥ 2.25 Å apart: beyond every switch (Cu–Cu 1.98 Å)
    assert inputs.vectors.shape[0] > 0 and float(zbl(inputs).abs().sum()) == 0.0
    tangents = torch.randn(2, inputs.vectors.shape[0], 3, dtype=torch.float64)
    assert torch.equal(zbl.edge_hessian_vectors(inputs, tangents), torch.zeros_like(tangents))
