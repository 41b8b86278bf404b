"""Last-layer Laplace variances against a brute-force Hessian of the training loss, and the
latent Gaussian's whitening on its own fitting data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

import equipot
from equipot.data import DataSource, GraphDataset, open_cache
from equipot.physics.derivatives import predict
from equipot.train.loss import LossFunction, LossWeights, Normalisation, loss_terms
from equipot.uq.estimate import UncertainPredictor
from equipot.uq.fit import fit_uncertainty
from tests.train_utils import emt_frames, write_emt

WEIGHTS = LossWeights(energy=1.0, forces=10.0, stress=0.0)
ELEMENT_WEIGHTS = {"Al": 2.0}


def _tiny_model(seed=0):
    return equipot.build_model(
        ["Al", "Cu"],
        r_max=3.0,
        l_max=1,
        channels=4,
        num_layers=2,
        correlation=2,
        radial_hidden=[8],
        readout_hidden=3,
        avg_num_neighbors=10.0,
        scale=0.6,
        shift=-0.2,
        e0={"Al": -1.0, "Cu": -2.0},
        seed=seed,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("llpr")
    path = write_emt(tmp / "train.xyz", n=24, seed=3)
    return GraphDataset(open_cache(DataSource(path=path), 3.0, tmp / "cache"))


def _readout_names(model):
    return [
        f"layers.{t}.node.readout.{len(layer.node.readout) - 1}"
        for t, layer in enumerate(model.layers)
    ]


def _with_theta(model, theta):
    """Parameters with the last readout matrices replaced by slices of θ (differentiable)."""
    params = dict(model.named_parameters())
    start = 0
    for name in _readout_names(model):
        size = params[name].shape[0]
        params[name] = theta[start : start + size].unsqueeze(1)
        start += size
    return params


def test_last_layer_variance_equals_brute_force_laplace(dataset):
    model = _tiny_model()
    uq = fit_uncertainty(
        model,
        dataset,
        energy_weight=WEIGHTS.energy,
        forces_weight=WEIGHTS.forces,
        element_weights=ELEMENT_WEIGHTS,
        force_frames=len(dataset),
        batch_size=7,
    )
    lam = 0.05
    model.uncertainty = uq.replace(posterior=uq.posterior.with_(regularizer=lam))
    fast = equipot.calculator.frozen_copy(model, torch.float64, "cpu")  # C++ engine path

    # brute force: the training loss over the whole set as a function of θ, its Hessian
    theta0 = model.readout_weights().detach().clone()
    batch = dataset.batch(np.arange(len(dataset)), torch.float64)
    loss_fn = LossFunction.create(WEIGHTS, "mse", 0.01, ELEMENT_WEIGHTS)
    meta = dataset.frame_arrays(["has_forces", "has_stress"])
    norm = Normalisation.of(dataset.num_atoms(), meta["has_forces"], meta["has_stress"])

    class Call(torch.nn.Module):
        def __init__(self, theta):
            super().__init__()
            self.theta = theta

        def forward(self, graph):
            return functional_call(model, _with_theta(model, self.theta), (graph,))

    def loss(theta):
        pred = predict(Call(theta), batch.graph, forces=True, create_graph=True)
        return sum(loss_terms(pred, batch, loss_fn, norm).values())

    hessian = torch.autograd.functional.hessian(loss, theta0)
    covariance = torch.linalg.inv(0.5 * hessian + lam * torch.eye(len(theta0), dtype=torch.float64))

    atoms = emt_frames(1, seed=11)[0]
    atoms.rattle(0.2, seed=2)  # away from the training frames
    graph = equipot.atoms_to_graph(atoms, 3.0, torch.float64)

    def outputs(theta):
        pred = predict(Call(theta), graph, forces=True, create_graph=True)
        return torch.cat([pred.energy, pred.atomic_energies, pred.forces.reshape(-1)])

    jac = torch.autograd.functional.jacobian(outputs, theta0)  # (1 + N + 3N, D)
    brute = torch.einsum("rd,de,re->r", jac, covariance, jac)
    n = len(atoms)

    got = UncertainPredictor([model], last_layer_forces=True)(graph)
    np.testing.assert_allclose(got.energy_std.square(), brute[:1], rtol=1e-8)
    np.testing.assert_allclose(got.atomic_energy_std.square(), brute[1 : 1 + n], rtol=1e-8)
    np.testing.assert_allclose(
        got.forces_std.square(), brute[1 + n :].reshape(n, 3).sum(1), rtol=1e-8
    )
    # the fast path (C++ engine features, tabulated radial functions) agrees to rounding
    assert fast.inference_pass(graph) is not None
    np.testing.assert_allclose(
        UncertainPredictor([fast])(graph).energy_std.square(), brute[:1], rtol=1e-6
    )


def test_mahalanobis_whitening_on_fitting_data(dataset):
    model = _tiny_model(seed=1)
    uq = fit_uncertainty(model, dataset, ridge=0.0, batch_size=5)
    batch = dataset.batch(np.arange(len(dataset)), torch.float64)
    fast = equipot.calculator.frozen_copy(model, torch.float64, "cpu")  # as the fit evaluates
    pred = predict(fast, batch.graph, forces=True, features=True)
    z = batch.graph.atomic_numbers
    u = uq.latent.whitened(pred.features, z)
    D = u.shape[1]
    for element in (13, 29):
        rows = u[z == element]
        assert len(rows) > 3 * D
        np.testing.assert_allclose(rows.mean(0), 0.0, atol=1e-9)
        cov = rows.T @ rows / len(rows)
        # the raw features' covariance has a condition number ≈ 1e9 (eigenvalues 1e-13 to
        # 4e-4 eV²: a tiny random model), so rounding alone leaves ≈ 1e-7 here
        np.testing.assert_allclose(cov, np.eye(D), atol=1e-6)
    d = uq.latent.distance(pred.features, z)
    # the same conditioning: 1.6e-8 off on one machine, hence 1e-6 as for the covariance
    np.testing.assert_allclose(d.square().mean(), 1.0, rtol=1e-6)
    # a far-away environment (compressed by 15 %) is many standard deviations out
    atoms = emt_frames(1, seed=5)[0]
    atoms.set_cell(atoms.cell * 0.85, scale_atoms=True)
    far = predict(fast, equipot.atoms_to_graph(atoms, 3.0, torch.float64), features=True)
    assert float(uq.latent.distance(far.features, torch.as_tensor(atoms.numbers)).min()) > 3


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_feature_jacobian_any_chunk_equals_finite_differences(chunk):
    """J_ia = ∂Φ_s/∂r_ia whether the D cotangents go one at a time (the kernels' backward) or
    vmapped in chunks (3 does not divide D; 64 ≥ D is one pass), against central differences."""
    from equipot.uq.llpr import feature_jacobian

    model = _tiny_model()
    frames = emt_frames(2, seed=5)
    graph = equipot.AtomicGraph.from_atoms_list(frames, cutoff=3.0, dtype=torch.float64)
    jac = feature_jacobian(model, graph, chunk=chunk)
    d = model.readout_weights().numel()
    assert jac.shape == (graph.num_atoms, 3, d)

    def phi(positions):
        out = model(graph.replace(positions=positions), features=True).features
        return out.detach().sum(0)  # Φ summed over systems, as feature_jacobian differentiates

    h = 1e-5
    for i, a in [(0, 0), (3, 2), (graph.num_atoms - 1, 1)]:
        plus, minus = graph.positions.clone(), graph.positions.clone()
        plus[i, a] += h
        minus[i, a] -= h
        numeric = (phi(plus) - phi(minus)) / (2 * h)
        np.testing.assert_allclose(jac[i, a], numeric, rtol=1e-6, atol=1e-9)


def test_latent_whitening_paths_agree_with_a_triangular_solve(monkeypatch):
    """Batched (all elements at once), per-element and single-element whitening equal
    L_z⁻¹ (φ − μ_z) by a triangular solve; an element absent from the fit is ∞."""
    from equipot.uq import latent

    rng = np.random.default_rng(3)
    z = torch.as_tensor(rng.choice([1, 6, 8], size=200))
    x = torch.as_tensor(rng.normal(size=(200, 5)) * [1.0, 2.0, 0.5, 3.0, 1.5])
    fit = latent.LatentGaussian.fit(x, z)
    probe_z = torch.as_tensor([1, 6, 8, 7, 1])  # N (7) was never seen
    probe = torch.as_tensor(rng.normal(size=(5, 5)))
    expected = torch.full_like(probe, torch.inf)
    for k, element in enumerate(fit.atomic_numbers):
        rows = probe_z == element
        centred = (probe[rows] - fit.means[k]).T
        expected[rows] = torch.linalg.solve_triangular(fit.cholesky[k], centred, upper=False).T
    batched = fit.whitened(probe, probe_z)
    monkeypatch.setattr(latent, "WHOLE_BATCH_LIMIT", 0)
    looped = fit.whitened(probe, probe_z)
    for u in (batched, looped):
        assert torch.isinf(u[3]).all()
        np.testing.assert_allclose(u[[0, 1, 2, 4]], expected[[0, 1, 2, 4]], rtol=1e-12)
    single = latent.LatentGaussian.fit(x[z == 6], z[z == 6])
    u = single.whitened(probe, probe_z)
    ref = torch.linalg.solve_triangular(
        single.cholesky[0], (probe[1] - single.means[0])[:, None], upper=False
    )
    np.testing.assert_allclose(u[1], ref[:, 0], rtol=1e-12)
    assert torch.isinf(u[[0, 2, 3, 4]]).all()


@pytest.mark.parametrize("on_kernel", [True, False])
@pytest.mark.parametrize("score", [None, "local", "latent"])
def test_folded_md_scores_equal_the_general_path(dataset, score, on_kernel, monkeypatch):
    """The one-product path of the MD step (uq/local_scores.py; in PyTorch, and in one C++ call
    where the kernels are built) gives the general path's σ(E_s), σ(E_i), latent distances and
    force ball, for a batch of two systems and an atom whose element the latent fit never saw
    (∞)."""
    from equipot.graph import batch_graphs
    from equipot.kernels import cpu_kernels
    from equipot.uq import local_scores
    from equipot.uq.latent import LatentGaussian
    from equipot.uq.store import ForceBall

    if on_kernel:
        assert cpu_kernels() is not None  # CI builds the kernels; the C++ path must be tested
    else:
        monkeypatch.setattr(local_scores, "cpu_kernels", lambda: None)

    model = _tiny_model(seed=2)
    uq = fit_uncertainty(model, dataset, batch_size=8)
    fast = equipot.calculator.frozen_copy(model, torch.float64, "cpu")
    batch = dataset.batch(np.arange(len(dataset)), torch.float64)
    features = predict(fast, batch.graph, features=True).features
    copper = batch.graph.atomic_numbers == 29
    uq = uq.replace(
        posterior=uq.posterior.with_(regularizer=0.05, energy_scale=2.5),
        latent=LatentGaussian.fit(features[copper], batch.graph.atomic_numbers[copper]),
    )
    if score is not None:
        ball = ForceBall(alpha=0.1, quantile=1.7, score=score, floor=0.02, frames=10)
        uq = uq.replace(ball=ball)
    fast.uncertainty = uq
    frames = emt_frames(2, seed=13)
    for i, atoms in enumerate(frames):
        atoms.rattle(0.1, seed=i)
    graph = batch_graphs([equipot.atoms_to_graph(a, 3.0, torch.float64) for a in frames])
    assert (graph.atomic_numbers == 13).any()

    predictor = UncertainPredictor([fast])
    folded = predictor(graph)
    assert predictor._local_scores is not None  # the folded path ran
    # atomic numbers edited in place (e.g. a swap move) are seen: the element cache is by value
    swapped = graph.replace(atomic_numbers=graph.atomic_numbers.clone())
    assert torch.isinf(predictor(swapped).latent_distance).any()
    swapped.atomic_numbers[swapped.atomic_numbers == 13] = 29
    assert torch.isfinite(predictor(swapped).latent_distance).all()
    monkeypatch.setattr(local_scores.LocalScores, "applies", staticmethod(lambda uq: False))
    general = UncertainPredictor([fast])(graph)
    assert UncertainPredictor([fast])._folded(uq) is None
    for key in ("energy_std", "atomic_energy_std", "latent_distance", "force_sigma"):
        a, b = getattr(folded, key), getattr(general, key)
        if key == "force_sigma" and score is None:
            assert a is None and b is None
            continue
        assert a.shape == b.shape
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        finite = torch.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-10)
    assert torch.isinf(folded.latent_distance[graph.atomic_numbers == 13]).all()
    if score is not None:
        np.testing.assert_allclose(folded.force_radius, general.force_radius, rtol=1e-10)
