"""The energy baseline: isolated atoms, dissociation to Σ E0, short-range repulsion, and no
coordination-linear term that a folding structure could fall into."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import covalent_radii

import equipot
from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.kernels import cpu_kernels
from equipot.nn.radial import PolynomialEnvelope
from equipot.physics.derivatives import predict
from equipot.scan import Coordinate, check_scan, run_scan
from tests.conftest import ELEMENTS, evaluate, random_cluster, small_model

E0 = {"H": -1.0, "C": -3.0, "O": -2.5, "Cu": -4.0}


def _default_model(**options) -> equipot.EnergyModel:
    """The defaults of schema 2 (no shift, ZBL on) with a small network."""
    options.setdefault("shift", 0.0)
    return small_model(**options)


def _paths(model):
    """The C++ engine and plain autograd through the modules."""
    fast = frozen_copy(model, torch.float64, "cpu")
    slow = frozen_copy(model, torch.float64, "cpu").set_execution(
        kernels=False, memory_efficient=False
    )
    return fast, slow


def _zbl_reference(z1: int, z2: int, r: float) -> float:
    """The ZBL universal potential from its published constants (eV, Å)."""
    a = 0.46850 / (z1**0.23 + z2**0.23)  # 0.8854 a0 as ZBL tabulated it
    x = r / a
    phi = (
        0.18175 * np.exp(-3.19980 * x)
        + 0.50986 * np.exp(-0.94229 * x)
        + 0.28022 * np.exp(-0.40290 * x)
        + 0.02817 * np.exp(-0.20162 * x)
    )
    return 14.399645478425668 * z1 * z2 / r * phi


def test_default_config_has_no_coordination_term_and_repulsion_on():
    config = equipot.ModelConfig(elements=["H", "O"])
    assert config.shift == 0.0 and config.repulsion is not None
    assert config.schema_version == 5 and config.radial_floor is None
    assert config.feature_ceiling is None  # measured by training, never a default


def test_isolated_atom_energy_is_exactly_e0_on_every_path():
    model = _default_model()
    for path in _paths(model):
        for symbol in ELEMENTS:
            graph = atoms_to_graph(Atoms(symbol, positions=[[0, 0, 0]]), 3.5, torch.float64)
            with torch.enable_grad():
                pred = predict(path, graph)
            assert float(pred.energy[0].detach()) == E0[symbol]
            assert torch.all(pred.forces == 0.0)


@pytest.mark.parametrize("pair", ["OH", "CC", "HCu"])
def test_diatomic_dissociates_smoothly_to_sum_of_e0(pair):
    model = _default_model(seed=3)
    r_max = model.config.r_max
    limit = sum(E0[s] for s in Atoms(pair).get_chemical_symbols())
    distances = np.linspace(1.0, r_max + 1.0, 400)
    energies, forces = [], []
    for d in distances:
        out = evaluate(model, Atoms(pair, positions=[[0, 0, 0], [0, 0, d]]))
        energies.append(out["energy"])
        forces.append(out["forces"][1, 2])
    energies, forces = np.array(energies), np.array(forces)
    outside = distances >= r_max
    assert np.all(energies[outside] == limit) and np.all(forces[outside] == 0.0)
    # forces are −dE/dr everywhere (central differences), so the curve has no kinks or jumps
    h = distances[1] - distances[0]
    slope = np.gradient(energies, h)
    inner = slice(2, -2)
    scale = np.abs(forces).max()
    assert np.abs(slope[inner] + forces[inner]).max() < 2e-3 * scale
    # and E approaches Σ E0 smoothly: |E − Σ E0| ≤ c (r_max − r)^3 just inside the cutoff
    near = (distances < r_max) & (distances > r_max - 0.3)
    gap = r_max - distances[near]
    assert np.all(np.abs(energies[near] - limit) <= 50.0 * gap**3 + 1e-12)


@pytest.mark.parametrize("symbols", ["HH", "CH", "OO", "CuCu", "CuH"])
def test_repulsion_at_short_distance(symbols):
    model = _default_model(seed=1)
    z1, z2 = Atoms(symbols).numbers
    bond = covalent_radii[z1] + covalent_radii[z2]
    r_in = 0.5 * bond
    energies, forces = [], []
    distances = np.linspace(0.12, 0.45 * bond, 30)
    for d in distances:
        out = evaluate(model, Atoms(symbols, positions=[[0, 0, 0], [0, 0, d]]))
        energies.append(out["energy"])
        forces.append(out["forces"][1, 2])
    assert np.all(np.array(forces) > 0), "atoms pushed together must be pushed apart"
    assert np.all(np.diff(energies) < 0)
    # well inside r_in the pair energy is ZBL's (the network adds a bounded part)
    no_zbl = frozen_copy(model, torch.float64, "cpu")
    no_zbl.terms.clear()
    d = 0.2
    atoms = Atoms(symbols, positions=[[0, 0, 0], [0, 0, d]])
    graph = atoms_to_graph(atoms, 3.5, torch.float64)
    full = evaluate(model, atoms)["energy"]
    network = float(predict(no_zbl, graph, forces=False).energy[0])
    assert d < r_in
    assert full - network == pytest.approx(_zbl_reference(z1, z2, d), rel=1e-12)
    assert full - sum(E0[s] for s in atoms.get_chemical_symbols()) > 10.0


def test_repulsion_is_off_at_bonding_distances():
    """Beyond outer × (R_i + R_j) the term is exactly zero: ordinary structures see no change."""
    with_zbl = _default_model(seed=2)
    without = _default_model(seed=2, repulsion=None)
    atoms = random_cluster(8, seed=1)  # atoms ≥ 0.9 Å apart: above every r_out here
    for path_a, path_b in zip(_paths(with_zbl), _paths(without), strict=True):
        graph = atoms_to_graph(atoms, 3.5, torch.float64)
        with torch.enable_grad():
            a, b = predict(path_a, graph), predict(path_b, graph)
        pairs = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
        z = atoms.numbers
        radii = covalent_radii[z][:, None] + covalent_radii[z][None, :]
        if np.all(pairs >= 0.75 * radii[np.triu_indices(len(atoms), 1)]):
            assert float(a.energy) == float(b.energy)
            assert torch.equal(a.forces, b.forces)


@pytest.mark.skipif(cpu_kernels() is None, reason="kernels could not be built")
def test_repulsion_engine_matches_autograd_and_finite_differences():
    model = _default_model(seed=4)
    rng = np.random.default_rng(0)
    atoms = random_cluster(7, seed=2)
    atoms.positions *= 0.45  # squeeze: many pairs inside the switching region
    atoms.positions += rng.normal(0, 0.01, atoms.positions.shape)
    fast, slow = _paths(model)
    graph = atoms_to_graph(atoms, 3.5, torch.float64)
    with torch.enable_grad():
        a, b = predict(fast, graph), predict(slow, graph)
    assert fast.inference_pass(graph) is not None
    scale = float(b.forces.abs().max())
    assert abs(float((a.energy - b.energy).detach())) <= 1e-12 * abs(float(b.energy.detach()))
    assert float((a.forces - b.forces).abs().max()) <= 1e-12 * scale
    # forces against central differences of the energy
    h = 1e-5
    for atom, axis in ((0, 0), (3, 2), (6, 1)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            energies.append(evaluate(model, moved)["energy"])
        fd = -(energies[0] - energies[1]) / (2 * h)
        assert fd == pytest.approx(float(a.forces[atom, axis]), rel=1e-6, abs=1e-6)


def _chain() -> Atoms:
    """A zig-zag chain of 8 carbons (1.5 Å bonds) whose end can fold back onto itself."""
    positions = [[1.25 * k, 0.8 * (k % 2), 0.0] for k in range(8)]
    return Atoms("C8", positions=positions)


def test_folding_scan_stays_bounded_where_a_coordination_term_falls():
    """A torsion that folds the chain end onto the rest raises every atom's neighbour count.

    With statistics of a set whose energies lie 4 eV/atom below Σ E0, the old baseline put
    that residual into shift·ρ (shift = residual / mean ρ); the default baseline keeps the
    isolated-atom E0 and no coordination term. The network is switched off (scale → 0) to
    look at the baseline alone: the old one falls by ~1 eV along the scan (a hole the detector
    flags), the new one stays flat."""
    chain = _chain()
    coordinate = Coordinate.torsion(chain, (1, 2, 3, 4))
    values = coordinate.value(chain) + np.arange(0.0, 181.0, 15.0)
    model = _default_model(scale=1e-12)
    graph = atoms_to_graph(chain, model.config.r_max, torch.float64)
    lengths = torch.linalg.vector_norm(graph.edge_vectors(), dim=1)
    envelope = PolynomialEnvelope(model.config.r_max, model.config.envelope_exponent)(lengths)
    mean_rho = float(envelope.sum()) / model.config.avg_num_neighbors / len(chain)
    legacy = small_model(scale=1e-12, shift=-4.0 / mean_rho, repulsion=None)
    scans = {}
    for name, m in (("default", model), ("coordination-linear", legacy)):
        calc = equipot.EquipotCalculator(m)
        scans[name] = run_scan(chain, calc, coordinate, values)
    old = scans["coordination-linear"]
    new = scans["default"]
    assert old.relative.min() < -0.5  # the hole of the old baseline
    assert check_scan(old.values, old.energies, old.generalized_forces).hole
    assert np.abs(new.relative).max() < 1e-6
    assert check_scan(new.values, new.energies, new.generalized_forces).ok
