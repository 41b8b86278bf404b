"""Relaxations (FIRE, L-BFGS, Newton; cell; rigid-body projection) and NEB against ASE."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import add_adsorbate, bulk, fcc100
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import BFGS, FIRE

from equipot.sim.analytic import LennardJones
from equipot.sim.neb import interpolate, neb
from equipot.sim.potentials import ASEPotential, ModelPotential
from equipot.sim.relax import relax
from equipot.sim.state import GPA
from tests.conftest import random_cluster, small_model


@pytest.mark.parametrize("method", ["fire", "lbfgs"])
def test_relax_emt_cluster_reaches_the_ase_minimum(method):
    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.1, seed=1)
    result = relax(atoms, ASEPotential(EMT()), method=method, fmax=1e-3, max_steps=500)
    reference = atoms.copy()
    reference.calc = EMT()
    BFGS(reference, logfile=None).run(fmax=1e-4)
    assert result.converged and result.fmax < 1e-3
    assert abs(result.energy - reference.get_potential_energy()) < 1e-5
    relaxed = result.atoms()
    relaxed.calc = EMT()
    assert np.linalg.norm(relaxed.get_forces(), axis=1).max() < 1e-3


def test_cell_relaxation_under_pressure():
    atoms = bulk("Cu", "fcc", a=3.8, cubic=True)
    atoms.rattle(0.05, seed=2)
    result = relax(
        atoms,
        ASEPotential(EMT()),
        method="lbfgs",
        fmax=1e-4,
        cell=True,
        pressure=5.0,
        max_steps=300,
    )
    assert result.converged
    relaxed = result.atoms()
    relaxed.calc = EMT()
    stress = relaxed.get_stress(voigt=False) / GPA
    np.testing.assert_allclose(stress, -5.0 * np.eye(3), atol=0.01)  # σ = −P·1 at H's minimum
    assert np.linalg.norm(relaxed.get_forces(), axis=1).max() < 1e-4
    a, b, c, *angles = relaxed.cell.cellpar()
    assert abs(a - b) < 1e-3 and abs(a - c) < 1e-3 and np.abs(np.array(angles) - 90).max() < 0.05
    assert 3.50 < a < 3.59  # compressed from EMT's zero-pressure 3.590 Å
    free = relax(atoms, ASEPotential(EMT()), method="fire", fmax=1e-4, cell=True)
    assert abs(free.atoms().cell.cellpar()[0] - 3.5898) < 2e-3


def test_newton_needs_fewer_iterations_than_lbfgs():
    """Lennard-Jones Ar13 (exact Hessian by autograd, as for a model) from a rattled start."""
    atoms = Icosahedron("Ar", 2)
    atoms.rattle(0.1, seed=0)
    pot = ModelPotential(LennardJones(cutoff=10.0))
    newton = relax(atoms, pot, method="newton", fmax=1e-4, max_steps=100)
    lbfgs = relax(atoms, pot, method="lbfgs", fmax=1e-4, max_steps=1000)
    assert newton.converged and lbfgs.converged
    assert abs(newton.energy - lbfgs.energy) < 1e-6  # same minimum
    assert newton.hessians <= newton.iterations <= 10
    assert newton.iterations < lbfgs.iterations


def test_newton_with_hessian_refresh_reuses_hessians():
    """Exact Hessian every 5 accepted steps, BFGS-updated in between: same minimum, fewer
    exact Hessians than iterations."""
    atoms = Icosahedron("Ar", 2)
    atoms.rattle(0.1, seed=0)
    pot = ModelPotential(LennardJones(cutoff=10.0))
    exact = relax(atoms, pot, method="newton", fmax=1e-4, max_steps=100)
    mixed = relax(atoms, pot, method="newton", fmax=1e-4, max_steps=200, hessian_refresh=5)
    assert mixed.converged and abs(mixed.energy - exact.energy) < 1e-6
    assert 1 <= mixed.hessians < mixed.iterations
    with pytest.raises(ValueError, match="hessian_refresh"):
        relax(atoms, pot, method="newton", hessian_refresh=0)


def test_newton_on_a_model_converges_and_keeps_the_molecule_in_place():
    # without the ZBL term: this untrained model collapses the cluster until C-O pairs sit at
    # the repulsion's switch-off distance, a flat, strongly anharmonic minimum that takes ~25
    # Newton steps from a 0.02 Å rattle; the test is about Newton's quadratic convergence
    pot = ModelPotential(small_model(repulsion=None))
    start = relax(random_cluster(6, seed=2), pot, method="newton", fmax=1e-5).atoms()
    start.rattle(0.02, seed=0)
    result = relax(start, pot, method="newton", fmax=1e-4, max_steps=100)
    assert result.converged and result.iterations <= 10
    # rigid-body motions were projected out: centre and orientation are kept
    before, after = start.get_positions(), result.atoms().get_positions()
    assert np.abs(after.mean(0) - before.mean(0)).max() < 1e-8
    assert np.abs(np.cross(before - before.mean(0), after - before).sum(0)).max() < 0.05


def test_newton_rejects_cells_and_non_model_potentials():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    with pytest.raises(ValueError, match="positions only"):
        relax(atoms, ModelPotential(small_model()), method="newton", cell=True)
    atoms.rattle(0.05, seed=1)
    with pytest.raises(ValueError, match="model potential"):
        relax(atoms, ASEPotential(EMT()), method="newton")


def test_neb_adatom_hop_on_copper_matches_ase():
    slab = fcc100("Cu", size=(2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, "Cu", 1.7, "hollow")
    slab.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in slab]))
    initial = slab.copy()
    initial.calc = EMT()
    BFGS(initial, logfile=None).run(fmax=1e-4)
    final = slab.copy()
    final.positions[-1, 0] += slab.cell[0, 0] / 2
    final.calc = EMT()
    BFGS(final, logfile=None).run(fmax=1e-4)

    ours = neb(initial, final, ASEPotential(EMT()), n_images=3, climb=True, fmax=0.01)
    images = interpolate(initial, final, 3)
    for image in images:
        image.calc = EMT()
    band = NEB(images, climb=True, k=0.1, method="improvedtangent")
    FIRE(band, logfile=None).run(fmax=0.01, steps=1000)
    energies = np.array([image.get_potential_energy() for image in images])
    reference = energies.max() - energies[0]
    assert ours.converged and 0.2 < reference < 0.8
    assert abs(ours.barrier - reference) < 2e-3
    assert ours.climbing_image == 2 and len(ours.images) == 5
    assert abs(ours.barrier - ours.reverse_barrier) < 1e-3  # symmetric hop
    # the saddle is the bridge site halfway along the band (the hop is half a cell, so the
    # band may run either way round the periodic cell)
    first, top, last = (ours.images[k].positions[-1] for k in (0, 2, 4))
    assert np.abs(top[:2] - 0.5 * (first[:2] + last[:2])).max() < 0.01
