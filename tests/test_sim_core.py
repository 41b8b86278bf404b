"""Simulation state, potentials, skin neighbour lists and velocity Verlet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

import equipot
from equipot.geometry.neighbors import neighbor_list
from equipot.sim import nve
from equipot.sim.potentials import ASEPotential, ModelPotential
from equipot.sim.relax import relax
from equipot.sim.state import KB, SimState
from tests.conftest import random_cluster, random_crystal, small_model


def test_state_roundtrip_keeps_atoms_momenta_and_constraints():
    a = random_crystal(5, seed=1)
    a.set_momenta(np.random.default_rng(0).normal(size=(5, 3)))
    a.set_constraint(FixAtoms([1]))
    b = molecule("H2O")
    state = SimState.from_atoms([a, b], remove_com=False)
    assert state.n_systems == 2 and state.n_atoms == 8
    assert state.system_idx.tolist() == [0] * 5 + [1] * 3
    assert state.dof.tolist() == [12.0, 9.0]  # fixed atom: 3 fewer
    back = state.to_atoms()
    for orig, new in zip([a, b], back, strict=True):
        np.testing.assert_allclose(new.positions, orig.positions)
        np.testing.assert_allclose(new.cell.array, orig.cell.array)
        assert (new.pbc == orig.pbc).all() and (new.numbers == orig.numbers).all()
    np.testing.assert_allclose(back[0].get_momenta(), a.get_momenta())
    assert back[0].constraints[0].get_indices().tolist() == [1]


def test_maxwell_boltzmann_temperature_and_zero_momentum():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(4)  # 256 atoms
    state = SimState.from_atoms([atoms, atoms], temperature=500.0, seed=3)
    assert torch.allclose(state.dof, torch.tensor([765.0, 765.0], dtype=torch.float64))
    assert state.sum_per_system(state.momenta).abs().max() < 1e-10
    t = state.temperature()
    # 2K/(dof k) ~ Gamma with relative std sqrt(2/dof) ≈ 5 %
    assert ((t - 500.0).abs() < 4 * 500.0 * (2 / 765) ** 0.5).all()
    assert not torch.allclose(t[0], t[1])  # independent draws
    kinetic = state.kinetic_energy()
    assert torch.allclose(kinetic, 0.5 * state.dof * KB * t)


def _edge_set(graph, cutoff):
    d = graph.edge_vectors().norm(dim=1)
    keep = d < cutoff
    i, j = graph.edge_index[:, keep].tolist()
    s = graph.edge_shift[keep].round().long().tolist()
    return {(a, b, *c) for a, b, c in zip(i, j, s, strict=True)}


def _reference_set(state, cutoff):
    out = set()
    start = 0
    for s, n in enumerate(state.atoms_per_system().tolist()):
        pos = state.positions[start : start + n].numpy()
        i, j, sh = neighbor_list(pos, state.cell[s].numpy(), state.pbc[s].numpy(), cutoff)
        out |= {(a + start, b + start, *c) for a, b, c in zip(i, j, sh.tolist(), strict=True)}
        start += n
    return out


def test_skin_list_is_exact_and_rebuilt_only_when_needed():
    crystal = random_crystal(6, seed=2)
    state = SimState.from_atoms([crystal, random_cluster(6, seed=3)], remove_com=False)
    pot = ModelPotential(small_model(), skin=1.0)
    cutoff = pot.cutoff
    rng = np.random.default_rng(0)
    graph = pot.graph(state)
    assert pot.neighbors.rebuilds == 1 and _edge_set(graph, 99) == _reference_set(state, cutoff)
    for _ in range(5):  # small moves (< skin/2 in total): same list, still exact
        moved = state.replace(
            positions=state.positions + torch.as_tensor(rng.uniform(-0.05, 0.05, (12, 3)))
        )
        graph = pot.graph(moved)
        assert _edge_set(graph, 99) == _reference_set(moved, cutoff)
    assert pot.neighbors.rebuilds == 1
    # an isotropic compression of the periodic system by 5 %: rebuilt iff it must be
    squeezed = state.replace(cell=state.cell * 0.95)
    squeezed = squeezed.replace(
        positions=torch.cat([state.positions[:6] * 0.95, state.positions[6:]])
    )
    graph = pot.graph(squeezed)
    assert _edge_set(graph, 99) == _reference_set(squeezed, cutoff)
    push = torch.zeros(12, 3, dtype=torch.float64)
    push[0, 0] = 0.6
    far = state.replace(positions=state.positions + push)
    before = pot.neighbors.rebuilds
    pot.graph(far)
    assert pot.neighbors.rebuilds == before + 1  # one atom moved more than skin/2


def test_model_potential_matches_calculator_for_a_batch():
    model = small_model()
    structures = [random_crystal(6, seed=2), random_cluster(7, seed=4)]
    state = SimState.from_atoms(structures, remove_com=False)
    pot = ModelPotential(model, skin=0.7)
    out = pot(state, stress=True)
    for s, atoms in enumerate(structures):
        atoms.calc = equipot.EquipotCalculator(model)
        sel = state.system_idx == s
        assert abs(out.energy[s].item() - atoms.get_potential_energy()) < 1e-9
        np.testing.assert_allclose(out.forces[sel].numpy(), atoms.get_forces(), atol=1e-9)
    stress = structures[0].get_stress(voigt=False)
    np.testing.assert_allclose(out.stress[0].numpy(), stress, atol=1e-9)
    assert torch.isnan(out.stress[1]).all()


def test_ase_potential_matches_emt():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.05, seed=1)
    out = ASEPotential(EMT())(SimState.from_atoms(atoms), stress=True)
    atoms.calc = EMT()
    np.testing.assert_allclose(out.forces.numpy(), atoms.get_forces())
    np.testing.assert_allclose(out.stress[0].numpy(), atoms.get_stress(voigt=False))


@pytest.fixture(scope="module")
def relaxed_copper():
    """32 Cu atoms at a local minimum of a small random model (a smooth PES)."""
    model = small_model()
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.rattle(0.01, seed=0)
    result = relax(atoms, ModelPotential(model), method="fire", fmax=1e-3, max_steps=500)
    assert result.converged
    return model, result.atoms()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nve_conserves_energy(relaxed_copper, dtype):
    model, atoms = relaxed_copper
    pot = ModelPotential(model, dtype=dtype, skin=0.5)  # float32 model, float64 integration
    state = nve.init(SimState.from_atoms(atoms, temperature=300.0, seed=0), pot)
    total = []
    for _ in range(400):  # 0.2 ps at 0.5 fs
        state = nve.step(state, pot, dt=0.5)
        total.append((state.energy + state.kinetic_energy()).item())
    t_ps = np.arange(1, 401) * 0.5e-3
    drift = np.polyfit(t_ps, np.array(total), 1)[0] / len(atoms)
    assert state.temperature().item() > 100.0  # the atoms really move
    assert abs(drift) < 1e-5  # eV/atom/ps
    assert np.ptp(total) / len(atoms) < 2e-5


def test_nve_is_time_reversible_and_keeps_fixed_atoms(relaxed_copper):
    model, atoms = relaxed_copper
    atoms = atoms.copy()
    atoms.set_constraint(FixAtoms([0, 5]))
    pot = ModelPotential(model)
    start = nve.init(SimState.from_atoms(atoms, temperature=300.0, seed=1), pot)
    state = start
    for _ in range(40):
        state = nve.step(state, pot, dt=2.0)
    assert torch.equal(state.positions[[0, 5]], start.positions[[0, 5]])
    assert (state.positions - start.positions).abs().max() > 0.02
    state = state.replace(momenta=-state.momenta)
    for _ in range(40):
        state = nve.step(state, pot, dt=2.0)
    assert (state.positions - start.positions).abs().max() < 1e-9
    assert (state.momenta + start.momenta).abs().max() < 1e-9


def test_state_rejects_unsupported_constraints():
    from ase.constraints import FixBondLength

    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.75]])
    atoms.set_constraint(FixBondLength(0, 1))
    with pytest.raises(ValueError, match="FixBondLength"):
        SimState.from_atoms(atoms)
