"""Issue 10, second round: the ZBL switch placed where the training data end, and the optional
bound on each atom's network energy (model.saturation)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import covalent_radii
from ase.io import write

import equipot
from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.data import DataSource, GraphDataset, compute_statistics, open_cache
from equipot.lammps.export import export_model
from equipot.model.config import Repulsion
from equipot.model.inference import pack_engine
from equipot.model.second_order import second_order_available
from equipot.model.terms.zbl import switch_radii
from equipot.physics.derivatives import predict
from equipot.train.config import ModelOptions, RepulsionOptions
from tests.conftest import evaluate, random_cluster, small_model

# shortest distances of a methyl-acetate 300 K set (GFN2-xTB MD, benchmarks/extrapolation.py)
METHYL_ACETATE = {
    ("H", "H"): 1.520,
    ("C", "H"): 0.986,
    ("H", "O"): 1.821,
    ("C", "C"): 1.413,
    ("C", "O"): 1.141,
    ("O", "O"): 2.127,
}


def _methane(ch: float) -> Atoms:
    """CH4 with one C–H bond at ``ch`` Å, the others at 1.09 Å."""
    directions = np.array([[1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]]) / np.sqrt(3.0)
    lengths = np.array([ch, 1.09, 1.09, 1.09])
    return Atoms("CH4", positions=np.vstack([[0, 0, 0], directions * lengths[:, None]]))


def test_switch_radii_keep_every_pair_below_its_shortest_distance():
    radii = switch_radii(METHYL_ACETATE, ["H", "C", "O"], outer=1.0)
    for (a, b), d in METHYL_ACETATE.items():
        assert radii[a] + radii[b] <= d + 1e-9, f"{a}-{b} switched on inside the data"
    # the three bonded pairs of this set can all be met exactly by per-element radii
    for a, b in (("C", "H"), ("C", "C"), ("C", "O")):
        assert radii[a] + radii[b] == pytest.approx(METHYL_ACETATE[(a, b)], abs=1e-6)
    for element, r in radii.items():
        assert 0.0 < r <= covalent_radii[equipot.ModelConfig(elements=[element]).atomic_numbers[0]]


def test_switch_radii_maximise_the_worst_bonded_pair():
    """Four elements, five bonded pairs: not all can be tight; the worst coverage is as high as
    a brute-force search over radii finds."""
    shortest = {
        ("C", "H"): 0.986,
        ("H", "N"): 0.941,
        ("C", "C"): 1.432,
        ("C", "N"): 1.284,
        ("C", "O"): 1.146,
        ("H", "H"): 1.535,
    }
    elements = ["H", "C", "N", "O"]
    radii = switch_radii(shortest, elements)
    bonded = [(a, b) for a, b in shortest if (a, b) != ("H", "H")]

    def worst(r):
        return min((r[a] + r[b]) / shortest[(a, b)] for a, b in bonded)

    for pair, d in shortest.items():
        assert radii[pair[0]] + radii[pair[1]] <= d + 1e-9
    grid = np.linspace(0.2, 0.8, 31)
    best = 0.0
    for rh, rc, rn in itertools.product(grid, grid, grid):
        r = {"H": min(rh, 0.31), "C": rc, "N": rn}
        r["O"] = min(shortest[("C", "O")] - rc, 0.66)
        if all(r[a] + r[b] <= d for (a, b), d in shortest.items()) and r["O"] > 0:
            best = max(best, worst(r))
    assert worst(radii) >= best - 1e-6


def test_statistics_report_the_shortest_distance_of_each_pair(tmp_path):
    frames = []
    rng = np.random.default_rng(3)
    for k in range(6):
        atoms = _methane(1.0 + 0.02 * k)
        atoms.positions += rng.normal(0, 0.02, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=-18.0 + 0.01 * k, forces=np.zeros((5, 3)))
        frames.append(atoms)
    path = tmp_path / "ch4.xyz"
    write(path, frames, format="extxyz")
    dataset = GraphDataset(open_cache(DataSource(path=path), 4.0, tmp_path))
    stats = compute_statistics(dataset, ["H", "C"], 4.0, e0={"H": -1.0, "C": -10.0})
    d = [a.get_all_distances() for a in frames]
    ch = min(float(x[0, 1:].min()) for x in d)
    hh = min(float(x[1:, 1:][np.triu_indices(4, 1)].min()) for x in d)
    assert set(stats.shortest) == {"H-H", "H-C"}
    assert stats.shortest["H-C"] == pytest.approx(ch, abs=1e-6)
    assert stats.shortest["H-H"] == pytest.approx(hh, abs=1e-6)
    # mean (E − Σ E0)/N: −18 + 0.025 − (−14) over 5 atoms
    assert stats.binding_per_atom == pytest.approx((-18.0 + 0.025 + 14.0) / 5.0, abs=1e-9)


def test_data_switch_comes_from_the_data_and_the_default_is_covalent():
    shortest = {f"{a}-{b}": d for (a, b), d in METHYL_ACETATE.items()}
    data = ModelOptions(repulsion={"switch": "data"})
    rep = data.architecture(["H", "C", "O"], shortest)["repulsion"]
    assert (rep.inner, rep.outer) == (0.85, 0.93)
    assert rep.radii["C"] + rep.radii["H"] == pytest.approx(0.986, abs=1e-6)
    # the default: the covalent window, the radial floor holding the network below the data
    default = ModelOptions().architecture(["H", "C", "O"], shortest)
    assert default["repulsion"] == Repulsion(inner=0.5, outer=0.75)
    assert default["radial_floor"] == pytest.approx(shortest, rel=2e-5)
    assert ModelOptions(repulsion=None).architecture(["H"])["repulsion"] is None
    with pytest.raises(ValueError):
        RepulsionOptions(switch="nearest")
    # fine-tuning keeps a base model's term: options that resolve to it, whatever the new data
    for base in (rep, Repulsion(inner=0.5, outer=0.75), None):
        kept = RepulsionOptions.of(base)
        assert (None if kept is None else kept.resolve(["H", "C", "O"], {"C-H": 0.7})) == base


def test_ch_pair_just_below_the_data_is_repelled_with_the_data_switch():
    """The gap of the 0.5–0.75 covalent switch: at C–H 0.87 Å (12 % below the shortest C–H of
    the data) it gives nothing; the data switch (0.85–0.93 × d) gives most of
    ZBL's wall there, and nothing at the data's own distances nor at 0.93·d."""
    shortest = {f"{a}-{b}": d for (a, b), d in METHYL_ACETATE.items()}
    data = ModelOptions(repulsion={"switch": "data"})
    new_rep = data.architecture(["H", "C", "O"], shortest)["repulsion"]
    old = small_model(seed=1, shift=0.0, repulsion=Repulsion(inner=0.5, outer=0.75))
    new = small_model(seed=1, shift=0.0, repulsion=new_rep)
    none = small_model(seed=1, shift=0.0, repulsion=None)

    def wall(model, ch):
        return evaluate(model, _methane(ch))["energy"] - evaluate(none, _methane(ch))["energy"]

    assert wall(old, 0.87) == 0.0
    assert wall(new, 0.87) > 3.0  # full ZBL for C–H at 0.87 Å is ≈ 6 eV
    assert wall(new, 0.99) == 0.0  # the shortest C–H of the data: untouched
    assert wall(new, 0.93 * 0.986 + 1e-6) == 0.0
    pushed = [wall(new, d) for d in (0.91, 0.89, 0.85, 0.8, 0.7)]
    assert np.all(np.diff(pushed) > 0)
    forces = evaluate(new, _methane(0.87))["forces"] - evaluate(none, _methane(0.87))["forces"]
    direction = _methane(1.0).positions[1] / np.linalg.norm(_methane(1.0).positions[1])
    assert float(forces[1] @ direction) > 10.0  # the H is pushed out along the bond


def test_data_switch_engine_matches_autograd(kernels):
    """The engine reads the per-element switch radii from the packed tensors (as the LAMMPS
    plugin does): same energies and forces as the modules to 1e-10 relative."""
    radii = switch_radii(METHYL_ACETATE, ["H", "C", "O"])
    model = small_model(seed=4, shift=0.0, repulsion=Repulsion(inner=0.8, outer=1.0, radii=radii))
    fast = frozen_copy(model, torch.float64, "cpu")
    slow = frozen_copy(model, torch.float64, "cpu").set_execution(
        kernels=False, memory_efficient=False
    )
    packed = pack_engine(fast, torch.float64)
    expected = [
        radii.get(e, covalent_radii[z])
        for e, z in zip(model.config.elements, model.config.atomic_numbers, strict=True)
    ]
    assert packed["term.repulsion.radius"].tolist() == pytest.approx(expected, abs=0.0)
    atoms = _methane(0.87) + Atoms("O", positions=[[0.0, 0.0, -1.1]])
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    assert fast.inference_pass(graph) is not None
    with torch.enable_grad():
        a, b = predict(fast, graph), predict(slow, graph)
    assert abs(float((a.energy - b.energy).detach())) <= 1e-10 * abs(float(b.energy.detach()))
    scale = float(b.forces.abs().max())
    assert float((a.forces - b.forces).abs().max()) <= 1e-10 * scale


def _crushed(scale: float) -> Atoms:
    atoms = random_cluster(8, seed=5)
    atoms.positions = (atoms.positions - atoms.positions.mean(0)) * scale
    return atoms


def test_saturation_bounds_the_network_energy_of_a_crushed_cluster():
    bound = 2.0
    free = small_model(seed=3, shift=0.0, scale=500.0, repulsion=None)
    capped = small_model(seed=3, shift=0.0, scale=500.0, repulsion=None, saturation=bound)
    e0 = free.config.e0
    for s in (1.0, 0.6, 0.35):
        atoms = _crushed(s)
        reference = sum(e0[x] for x in atoms.get_chemical_symbols())
        e_free = evaluate(free, atoms)["energy"] - reference
        e_capped = evaluate(capped, atoms)["energy"] - reference
        assert abs(e_capped) < bound * len(atoms)
        # the same network, mapped atom by atom: tanh of the free model's atomic energies
        graph = atoms_to_graph(atoms, free.config.r_max, torch.float64)
        net = frozen_copy(free, torch.float64, "cpu")
        eps = predict(net, graph, forces=False).atomic_energies.detach().numpy()
        eps = eps - np.array([e0[x] for x in atoms.get_chemical_symbols()])
        assert e_capped == pytest.approx(float(np.sum(bound * np.tanh(eps / bound))), rel=1e-10)
    assert abs(e_free) > bound * len(atoms)  # without the bound the crushed cluster runs away


def test_saturation_keeps_isolated_atoms_forces_and_equivariance_exact():
    model = small_model(seed=2, shift=0.0, saturation=1.5)
    for symbol in ("H", "C", "O", "Cu"):
        out = evaluate(model, Atoms(symbol, positions=[[0.0, 0.0, 0.0]]))
        assert out["energy"] == model.config.e0[symbol]
    atoms = random_cluster(7, seed=4)
    atoms.positions *= 0.8
    out = evaluate(model, atoms)
    h = 1e-5
    for atom, axis in ((0, 0), (2, 1), (5, 2)):
        e = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            e.append(evaluate(model, moved)["energy"])
        assert -(e[0] - e[1]) / (2 * h) == pytest.approx(out["forces"][atom, axis], abs=1e-6)
    generator = torch.Generator().manual_seed(1)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))[0]
    R = rotation.numpy()
    turned = atoms.copy()
    turned.positions = atoms.positions @ R.T
    out_r = evaluate(model, turned)
    assert out_r["energy"] == pytest.approx(out["energy"], abs=1e-10)
    np.testing.assert_allclose(out_r["forces"], out["forces"] @ R.T, atol=1e-9)


def test_saturation_takes_the_pytorch_path_and_the_engine_refuses_it(tmp_path):
    model = small_model(seed=2, shift=0.0, saturation=1.5)
    fast = frozen_copy(model, torch.float64, "cpu")
    graph = atoms_to_graph(random_cluster(6, seed=1), model.config.r_max, torch.float64)
    assert fast.inference_pass(graph) is None  # the calculator falls back to autograd
    assert not second_order_available(fast, torch.float64)  # so does the fused training step
    with pytest.raises(ValueError, match="saturation"):
        pack_engine(fast, torch.float64)  # any packed engine
    with pytest.raises(ValueError, match=r"LAMMPS plugin.*saturation"):
        export_model(model, tmp_path / "bounded.eqp")
    assert not (tmp_path / "bounded.eqp").exists()


def test_saturation_option_needs_a_physical_binding_energy():
    options = ModelOptions(saturation=3.0)
    assert options.saturation_bound(-4.0, {"H": "given"}) == pytest.approx(12.0)
    assert ModelOptions().saturation_bound(-4.0, {"H": "given"}) is None
    with pytest.raises(ValueError, match="least-squares"):
        options.saturation_bound(-4.0, {"H": "least-squares"})
