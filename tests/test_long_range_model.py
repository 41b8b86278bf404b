"""Models with long-range electrostatics: derivatives, extensivity, equivariance, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import equipot
from equipot.graph import batch_graphs
from equipot.physics.derivatives import hessian_from_graph, predict
from tests.conftest import random_cluster, random_crystal, small_model

VARIANTS = {
    "latent-pme": {"charges": "latent", "method": "pme", "accuracy": 1e-8},
    "latent-split": {"charges": "latent", "method": "ewald", "cutoff": 3.0, "accuracy": 1e-8},
    "qeq": {"charges": "qeq", "accuracy": 1e-8},
    "qeq-yukawa": {"charges": "qeq", "kappa": 0.3, "smearing": 0.8, "accuracy": 1e-8},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def lr_model(request):
    return small_model(seed=3, long_range=VARIANTS[request.param])


def graph_of(atoms: Atoms, model) -> equipot.AtomicGraph:
    return equipot.atoms_to_graph(atoms, model.config.r_max, torch.float64)


def energy(model, atoms: Atoms) -> float:
    return float(model(graph_of(atoms, model)).energy[0])


def test_long_range_term_is_present(lr_model):
    local = small_model(seed=3)
    local.load_state_dict(
        {k: v for k, v in lr_model.state_dict().items() if not k.startswith("long_range")}
    )
    atoms = random_crystal(6, seed=2)
    difference = energy(lr_model, atoms) - energy(local, atoms)
    assert abs(difference) > 1e-6
    far = random_cluster(3, seed=4) + random_cluster(3, seed=5)
    far.positions[3:] += [12.0, 0.0, 0.0]  # two fragments far beyond r_max still interact
    split = far[:3], far[3:]
    interaction = energy(lr_model, far) - energy(lr_model, split[0]) - energy(lr_model, split[1])
    assert abs(interaction) > 1e-8


@pytest.mark.parametrize("kind", ["molecule", "crystal"])
def test_forces_and_stress_match_finite_differences(lr_model, kind):
    atoms = random_cluster(6, seed=7) if kind == "molecule" else random_crystal(5, seed=8)
    periodic = kind == "crystal"
    pred = predict(lr_model, graph_of(atoms, lr_model), forces=True, stress=periodic)
    rng = np.random.default_rng(0)
    h = 1e-5
    v = rng.normal(size=(len(atoms), 3))
    values = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions += sign * h * v
        values.append(energy(lr_model, moved))
    slope = (values[0] - values[1]) / (2 * h)
    assert -float((pred.forces.detach().numpy() * v).sum()) == pytest.approx(slope, abs=1e-7)
    if periodic:
        strain = rng.normal(size=(3, 3))
        strain = 0.5 * (strain + strain.T)
        values = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ (np.eye(3) + sign * h * strain), scale_atoms=True)
            values.append(energy(lr_model, moved))
        slope = (values[0] - values[1]) / (2 * h) / atoms.get_volume()
        assert float((pred.stress[0].detach().numpy() * strain).sum()) == pytest.approx(
            slope, abs=1e-9
        )


@pytest.mark.parametrize("variant", ["latent-pme", "qeq-yukawa"])
def test_hessian_matches_finite_differences(variant):
    lr_model = small_model(seed=3, long_range=VARIANTS[variant])
    atoms = random_cluster(5, seed=9)
    graph = graph_of(atoms, lr_model)
    hessian = hessian_from_graph(lr_model, graph).detach().numpy()
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-8)
    v = np.random.default_rng(1).normal(size=(len(atoms), 3))
    h = 1e-5
    grads = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions += sign * h * v
        grads.append(-predict(lr_model, graph_of(moved, lr_model)).forces.detach().numpy())
    np.testing.assert_allclose(
        hessian @ v.reshape(-1), ((grads[0] - grads[1]) / (2 * h)).reshape(-1), atol=1e-6
    )


def test_supercell_is_extensive(lr_model):
    atoms = random_crystal(4, seed=12)
    e1 = energy(lr_model, atoms)
    e8 = energy(lr_model, atoms * (2, 2, 2))
    assert e8 == pytest.approx(8 * e1, rel=1e-7)


def test_equivariance_and_charges_invariant(lr_model):
    rng = np.random.default_rng(2)
    q_matrix, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q_matrix * np.sign(np.linalg.det(q_matrix))  # proper rotation
    for atoms, reflect in ((random_cluster(7, seed=3), True), (random_crystal(5, seed=4), False)):
        transform = -rotation if reflect else rotation  # molecules: also an improper one
        moved = atoms.copy()
        moved.positions = atoms.positions @ transform.T + (0.0 if atoms.pbc.any() else 1.7)
        moved.cell = atoms.cell.array @ transform.T
        a = predict(lr_model, graph_of(atoms, lr_model))
        b = predict(lr_model, graph_of(moved, lr_model))
        assert float(b.energy[0]) == pytest.approx(float(a.energy[0]), abs=1e-10)
        np.testing.assert_allclose(
            b.forces.detach().numpy(), a.forces.detach().numpy() @ transform.T, atol=1e-10
        )
        np.testing.assert_allclose(b.charges.detach(), a.charges.detach(), atol=1e-10)


def test_charges_conserve_total_charge_and_batching_is_independent(lr_model):
    systems = [random_cluster(6, seed=1), random_crystal(5, seed=2), random_cluster(4, seed=3)]
    graphs = [graph_of(atoms, lr_model) for atoms in systems]
    alone = [predict(lr_model, g, stress=False) for g in graphs]
    batch = predict(lr_model, batch_graphs(graphs))
    start = 0
    for single in alone:
        n = len(single.charges)
        assert float(single.charges.sum()) == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_allclose(
            batch.charges[start : start + n].detach(), single.charges.detach(), atol=1e-12
        )
        np.testing.assert_allclose(
            batch.forces[start : start + n].detach(), single.forces.detach(), atol=1e-10
        )
        start += n
    np.testing.assert_allclose(
        batch.energy.detach(), torch.cat([s.energy for s in alone]).detach(), atol=1e-10
    )


@pytest.mark.parametrize("variant", ["latent-split", "qeq"])
def test_energy_continuous_along_a_path(variant):
    """No jumps (mesh, k-vector or cutoff switching) along a fine path through a crystal."""
    lr_model = small_model(seed=3, long_range=VARIANTS[variant])
    atoms = random_crystal(5, seed=6)
    energies = []
    for t in np.linspace(0.0, 0.4, 41):
        moved = atoms.copy()
        moved.positions[0] += t * np.array([1.0, 0.6, 0.3])
        energies.append(energy(lr_model, moved))
    second = np.abs(np.diff(energies, 2))
    first = np.abs(np.diff(energies))
    assert second.max() < 0.05 * first.max() + 1e-9


def test_model_file_round_trip(lr_model, tmp_path):
    path = lr_model.save(tmp_path / "lr.eqp")
    loaded = equipot.load_model(path)
    assert loaded.config.long_range == lr_model.config.long_range
    atoms = random_cluster(6, seed=11)
    assert energy(loaded, atoms) == energy(lr_model, atoms)


@pytest.mark.parametrize("variant", ["latent-pme", "qeq"])
def test_total_charge_is_an_input(variant):
    lr_model = small_model(seed=3, long_range=VARIANTS[variant])
    graphs = [graph_of(random_cluster(6, seed=1), lr_model), graph_of(random_crystal(5), lr_model)]
    batch = batch_graphs(graphs)
    charged = batch.replace(charge=torch.tensor([-1.0, 2.0], dtype=torch.float64))
    neutral, ionic = predict(lr_model, batch), predict(lr_model, charged)
    assert float(ionic.charges[:6].sum()) == pytest.approx(-1.0, abs=1e-12)
    assert float(ionic.charges[6:].sum()) == pytest.approx(2.0, abs=1e-12)
    assert abs(float(ionic.energy[0] - neutral.energy[0])) > 1e-6


def test_calculator_charges_and_dipole(tmp_path):
    from ase.io import read, write

    lr_model = small_model(seed=3, long_range=VARIANTS["qeq"])
    atoms = random_cluster(6, seed=2)
    atoms.info["charge"] = 1.0
    write(tmp_path / "ion.xyz", atoms, format="extxyz")
    atoms = read(tmp_path / "ion.xyz")  # the total charge survives extended XYZ
    atoms.calc = equipot.EquipotCalculator(lr_model)
    charges = atoms.get_charges()
    assert charges.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(atoms.get_dipole_moment(), charges @ atoms.positions, atol=1e-12)
    atoms.calc = equipot.EquipotCalculator(lr_model, charge=0.0)  # an explicit charge wins
    assert atoms.get_charges().sum() == pytest.approx(0.0, abs=1e-12)
    crystal = random_crystal(5)
    crystal.calc = equipot.EquipotCalculator(lr_model)
    assert crystal.get_stress().shape == (6,)
    assert "dipole" not in crystal.calc.results  # not defined for a periodic cell


def _with_excess_weights(model, seed: int = 0):
    """Non-zero learned weights (they start at zero, where they equal the uniform rule)."""
    generator = torch.Generator().manual_seed(seed)
    weight = model.long_range.excess_weight
    with torch.no_grad():
        weight.copy_(3.0 * torch.randn(weight.shape, generator=generator, dtype=weight.dtype))
    return model


def test_learned_excess_weights_conserve_charge_and_follow_the_weights():
    """q_i = q̃_i − w_i (Σq̃ − Q)/Σw: the charge is exact, and each atom gives back in
    proportion to its weight, not an equal share."""
    model = _with_excess_weights(small_model(seed=3, long_range=VARIANTS["latent-pme"]))
    graphs = [
        graph_of(random_cluster(7, seed=1), model),
        graph_of(random_cluster(5, seed=2), model),
    ]
    batch = batch_graphs(graphs).replace(charge=torch.tensor([-1.0, 0.0], dtype=torch.float64))
    charges = predict(model, batch, stress=False).charges.detach()
    assert float(charges[:7].sum()) == pytest.approx(-1.0, abs=1e-12)
    assert float(charges[7:].sum()) == pytest.approx(0.0, abs=1e-12)
    scalars = model.local_energies(batch)[1].scalars.detach()
    raw = model.long_range.head_values(scalars).detach()
    weights = torch.nn.functional.softplus(scalars @ model.long_range.excess_weight.detach())
    for part in (slice(0, 7), slice(7, 12)):
        share = (raw[part] - charges[part]) / weights[part]
        np.testing.assert_allclose(share, share[0].expand_as(share), rtol=1e-10)
        assert float(weights[part].std() / weights[part].mean()) > 0.05  # not uniform


def test_zero_excess_weights_equal_the_uniform_rule():
    learned = small_model(seed=3, long_range=VARIANTS["latent-pme"])
    uniform = small_model(seed=3, long_range={**VARIANTS["latent-pme"], "excess_charge": "uniform"})
    assert uniform.long_range.excess_weight is None
    atoms = random_cluster(6, seed=4)
    assert energy(learned, atoms) == pytest.approx(energy(uniform, atoms), abs=1e-12)


def test_learned_excess_weights_forces_match_finite_differences():
    model = _with_excess_weights(small_model(seed=3, long_range=VARIANTS["latent-pme"]), seed=1)
    atoms = random_cluster(5, seed=7)
    atoms.info["charge"] = 1.0
    graph = graph_of(atoms, model).replace(charge=torch.tensor([1.0], dtype=torch.float64))
    forces = predict(model, graph, stress=False).forces.detach().numpy()
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (4, 2)]:
        values = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            g = graph_of(moved, model).replace(charge=graph.charge)
            values.append(float(model(g).energy[0]))
        assert forces[atom, axis] == pytest.approx(-(values[0] - values[1]) / (2 * h), abs=1e-7)


def test_schema_2_long_range_file_keeps_the_uniform_rule(tmp_path):
    """A file written before learned weights existed loads with the rule it was trained with."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    uniform = small_model(seed=3, long_range={**VARIANTS["latent-pme"], "excess_charge": "uniform"})
    path = uniform.save(tmp_path / "new.eqp")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    config = json.loads(metadata["config"])
    del config["long_range"]["excess_charge"]
    config["schema_version"] = 2
    metadata.update(config=json.dumps(config), schema_version="2")
    save_file(tensors, str(tmp_path / "old.eqp"), metadata=metadata)
    old = equipot.load_model(tmp_path / "old.eqp")
    assert old.config.long_range.excess_charge == "uniform"
    atoms = random_cluster(6, seed=5)
    assert energy(old, atoms) == energy(uniform, atoms)


@pytest.mark.parametrize(
    "variant,chunk_slots",
    [("latent-pme", None), ("latent-split", None), ("qeq", None), ("latent-pme", 20)],
)
def test_engine_path_equals_autograd_path(variant, chunk_slots):
    """Frozen long-range models take the C++ engine for the local part (its backward pass
    seeded with ∂E_lr/∂s): energies, forces, stress and charges equal plain autograd; also
    when the engine works in chunks of a few centres (nothing per slot kept between the
    passes: the backward pass rebuilds every layer's A)."""
    from equipot.calculator import frozen_copy
    from equipot.kernels import cpu_kernels

    if cpu_kernels() is None:
        pytest.skip("the C++ kernels are not built")  # CI requires them (.ci/run)
    model = small_model(seed=3, long_range=VARIANTS[variant])
    if model.long_range.excess_weight is not None:
        _with_excess_weights(model, seed=2)
    fast = frozen_copy(model, torch.float64, "cpu")
    if chunk_slots:
        fast.inference_chunk_slots = chunk_slots
    slow = frozen_copy(model, torch.float64, "cpu").set_execution(
        kernels=False, memory_efficient=False
    )
    graphs = [
        graph_of(random_crystal(6, seed=2), model),
        graph_of(random_cluster(5, seed=3), model),
    ]
    batch = batch_graphs(graphs).replace(charge=torch.tensor([1.0, -1.0], dtype=torch.float64))
    assert fast.inference_pass(batch, strain=True) is not None  # the engine path applies
    a, b = predict(fast, batch, stress=True), predict(slow, batch, stress=True)
    np.testing.assert_allclose(a.energy, b.energy.detach(), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(a.forces, b.forces.detach(), atol=1e-10)
    np.testing.assert_allclose(a.stress[:1], b.stress[:1].detach(), atol=1e-10)
    np.testing.assert_allclose(a.charges, b.charges.detach(), atol=1e-12)
    np.testing.assert_allclose(a.outputs["dipole"][1], b.outputs["dipole"][1].detach(), atol=1e-12)
