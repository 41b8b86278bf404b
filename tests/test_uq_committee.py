"""Committees through the ASE calculator; uncertainty data in model and committee files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import equipot
from equipot.calculator import atoms_to_graph, frozen_copy
from equipot.model.engine_pass import (
    _floor_signature,
    _shared,
    _terms_signature,
    committee_pass,
)
from equipot.physics.derivatives import member_predictions, predict
from equipot.uq.committee import committee_predict, load_committee, save_committee
from equipot.uq.estimate import UncertainPredictor
from equipot.uq.latent import LatentGaussian
from equipot.uq.llpr import LastLayerPosterior
from equipot.uq.store import ForceBall, Uncertainty
from tests.conftest import evaluate, random_cluster, random_crystal, small_model


@pytest.fixture(scope="module")
def members():
    return [small_model(seed=s) for s in (0, 1, 2)]


def test_committee_mean_and_std_equal_the_members(members, tmp_path):
    atoms = random_crystal(6, seed=2)
    single = [evaluate(m, atoms, stress=True) for m in members]
    energies = np.array([r["energy"] for r in single])
    forces = np.stack([r["forces"] for r in single])
    stress = np.stack([r["stress"] for r in single])

    path = save_committee(members, tmp_path / "committee.eqp")
    for spec in (members, path, [str(tmp_path / f"m{k}.eqp") for k in range(3)]):
        if isinstance(spec, list) and isinstance(spec[0], str):
            for k, m in enumerate(members):
                m.save(spec[k])
        calc = equipot.EquipotCalculator(spec)
        a = atoms.copy()
        a.calc = calc
        calc.calculate(a, ["energy", "forces", "stress"])
        r = calc.results
        np.testing.assert_allclose(r["energy"], energies.mean(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(r["energy_std"], energies.std(ddof=1), rtol=0, atol=1e-12)
        np.testing.assert_allclose(r["forces"], forces.mean(0), rtol=0, atol=1e-12)
        norm = np.sqrt(forces.var(0, ddof=1).sum(1))
        np.testing.assert_allclose(r["forces_std"], norm, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r["stress"], stress.mean(0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(r["member_energies"], energies, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r["member_forces"], forces, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r["member_stress"], stress, rtol=0, atol=1e-12)
        assert a.calc.get_property("energy_std", a) == r["energy_std"]


def test_committee_members_must_match():
    other = equipot.build_model(["H", "C"], r_max=3.5, channels=8, radial_hidden=[16, 16])
    with pytest.raises(ValueError, match="share elements and cutoff"):
        equipot.EquipotCalculator([small_model(), other])


def _fake_uncertainty(model, seed=0):
    """Random but valid fits (positive-definite G and covariances) for file round trips."""
    rng = np.random.default_rng(seed)
    D = int(model.readout_weights().numel())
    a = rng.normal(size=(D, D))
    chol = np.stack([np.linalg.cholesky(a @ a.T + D * np.eye(D))] * 4)
    latent = LatentGaussian(
        [1, 6, 8, 29],
        torch.as_tensor(rng.normal(size=(4, D))),
        torch.as_tensor(chol),
        [10, 10, 10, 10],
    )
    posterior = LastLayerPosterior(torch.as_tensor(a @ a.T), 0.1, 2.0, 3.0)
    ball = ForceBall(alpha=0.05, quantile=1.7, score="local", floor=0.01, frames=100)
    return Uncertainty(latent=latent, posterior=posterior, ball=ball)


def test_uncertainty_survives_model_and_committee_files(members, tmp_path):
    model = small_model(seed=4)
    model.uncertainty = _fake_uncertainty(model)
    path = model.save(tmp_path / "m.eqp")
    loaded = equipot.load_model(path)
    atoms = random_cluster(7, seed=3)
    before = evaluate(model, atoms)
    after = evaluate(loaded, atoms)
    for key in ("energy_std", "energies_std", "latent_distance", "force_radius"):
        np.testing.assert_allclose(after[key], before[key], rtol=1e-13)
    # R_i = q̂ √(σ_i² + floor²) with σ_i the local (atomic-energy) std
    np.testing.assert_allclose(
        after["force_radius"], 1.7 * np.sqrt(after["energies_std"] ** 2 + 0.01**2), rtol=1e-12
    )

    members = [*members[:2], model]
    c_uq = Uncertainty(ball=ForceBall(0.1, 2.0, "committee", 0.0, 50), committee_force_scale=4.0)
    loaded_members, loaded_uq = load_committee(save_committee(members, tmp_path / "c.eqp", c_uq))
    assert loaded_uq == c_uq
    assert loaded_members[2].uncertainty.ball == model.uncertainty.ball
    r = evaluate(tmp_path / "c.eqp", atoms)
    np.testing.assert_allclose(r["force_radius"], 2.0 * r["forces_std"], rtol=1e-12)
    f = r["member_forces"]
    np.testing.assert_allclose(r["forces_std"], np.sqrt(4.0 * f.var(0, ddof=1).sum(1)), rtol=1e-12)
    # from the one member with a latent fit (folded per member): its general-path distance
    graph = atoms_to_graph(atoms, model.config.r_max, torch.float64)
    fast = frozen_copy(model, torch.float64, "cpu")
    features = predict(fast, graph, features=True).features
    general = model.uncertainty.latent.distance(features, graph.atomic_numbers)
    np.testing.assert_allclose(r["latent_distance"], general.numpy(), rtol=1e-10)


def test_last_layer_forces_through_the_fast_path():
    """The feature Jacobian of an inference copy (fused kernels, vmapped backward) equals the
    module path's."""
    model = small_model(seed=5)
    model.uncertainty = _fake_uncertainty(model, seed=1)
    atoms = random_crystal(6, seed=2)
    graph = equipot.atoms_to_graph(atoms, model.config.r_max, torch.float64)
    reference = UncertainPredictor([model], last_layer_forces=True)(graph).forces_std
    calc = equipot.EquipotCalculator(model, last_layer_forces=True)
    calc.calculate(atoms, ["energy", "forces"])
    np.testing.assert_allclose(calc.results["forces_std"], reference.detach(), rtol=1e-8)


FLOOR = {"C-H": 1.0, "H-H": 1.6, "C-C": 1.4, "C-O": 1.2, "H-O": 0.95, "O-O": 2.0}


def _mixed_committee() -> list:
    """Two members with the same radial floor, one with another floor, one without, one with
    other ZBL radii: what is shared and what is not, in one committee."""
    models = [
        small_model(seed=0, shift=0.0, radial_floor=FLOOR),
        small_model(seed=1, shift=0.0, radial_floor=FLOOR),
        small_model(seed=2, shift=0.0, radial_floor={**FLOOR, "C-H": 1.05}),
        small_model(seed=3),
        small_model(seed=4, repulsion={"radii": {"H": 0.9}}),
    ]
    return [frozen_copy(m, torch.float64, "cpu") for m in models]


@pytest.mark.parametrize("threads", [1, 2])
def test_shared_committee_pass_equals_each_member_alone(kernels, threads):
    """One preparation, the floor and ZBL shared where the members agree, the engines in one
    call (side by side with two threads): each member's energy, forces, stress and readout
    features are those of the member evaluated alone, to 1e-12 — with a held C–H edge too."""
    committee = _mixed_committee()
    assert _shared(committee[:2], _floor_signature)
    assert not _shared(committee[:3], _floor_signature)
    assert _shared(committee[:4], _terms_signature)
    assert not _shared(committee, _terms_signature)
    short_ch = random_cluster(7, seed=5)
    short_ch.numbers[:2] = [6, 1]
    short_ch.positions[1] = short_ch.positions[0] + [0.92, 0.0, 0.0]  # below both C–H floors
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for atoms in (short_ch, random_crystal(6, seed=2)):
            periodic = bool(atoms.pbc.all())
            graph = atoms_to_graph(atoms, 3.5, torch.float64)
            shared = committee_pass(committee, graph, gradient=True, features=True)
            assert shared is not None
            preds = member_predictions(graph, *shared, forces=True, stress=periodic)
            for model, p in zip(committee, preds, strict=True):
                alone = predict(model, graph, forces=True, stress=periodic, features=True)
                for name in ("energy", "atomic_energies", "forces", "features") + (
                    ("stress",) if periodic else ()
                ):
                    a, b = getattr(p, name), getattr(alone, name)
                    assert float((a - b).abs().max()) <= 1e-12, name
        assert committee[0].floor_holds(atoms_to_graph(short_ch, 3.5, torch.float64))
    finally:
        torch.set_num_threads(before)


def test_committee_pass_declines_members_the_engine_cannot_take(kernels):
    committee = _mixed_committee()[:2]
    graph = atoms_to_graph(random_cluster(6, seed=1), 3.5, torch.float64)
    trainable = small_model(seed=7, shift=0.0, radial_floor=FLOOR).double()
    assert committee_pass([committee[0], trainable], graph) is None
    # the committee still evaluates, member by member
    c = committee_predict([committee[0], trainable], graph, forces=True)
    alone = predict(trainable, graph, forces=True)
    assert float((c.members[1].forces - alone.forces).abs().max()) <= 1e-12
