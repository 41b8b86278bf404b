"""Phonons against phonopy: finite displacements with EMT, and the same force constants."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from phonopy import Phonopy
from phonopy.file_IO import parse_FORCE_CONSTANTS
from phonopy.structure.atoms import PhonopyAtoms

from equipot.properties.phonons import compute_phonons
from tests.conftest import random_crystal

CELLS = {
    "fcc": (lambda: bulk("Cu", "fcc", a=3.59), (3, 3, 3)),
    "hcp": (lambda: bulk("Cu", "hcp", a=2.55, c=4.16), (3, 3, 2)),
}


def _phonopy_emt(unit: Atoms, supercell) -> Phonopy:
    """phonopy's own finite-displacement force constants, forces from EMT."""
    cell = PhonopyAtoms(
        symbols=unit.get_chemical_symbols(),
        cell=unit.cell.array,
        scaled_positions=unit.get_scaled_positions(),
    )
    phonon = Phonopy(cell, np.diag(supercell), primitive_matrix=np.eye(3))
    phonon.generate_displacements(distance=0.01, is_plusminus=True)
    forces = []
    for displaced in phonon.supercells_with_displacements:
        atoms = Atoms(
            displaced.symbols, cell=displaced.cell, scaled_positions=displaced.scaled_positions
        )
        atoms.pbc = True
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    return phonon


def _qpoints(unit: Atoms, n: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.vstack([rng.uniform(-0.5, 0.5, (n, 3)), unit.cell.bandpath(npoints=30).kpts])


@pytest.mark.parametrize("lattice", sorted(CELLS))
def test_emt_phonons_match_phonopy_finite_displacements(lattice):
    make, supercell = CELLS[lattice]
    unit = make()
    ours = compute_phonons(unit, EMT(), supercell, delta=0.01)
    phonon = _phonopy_emt(unit, supercell)
    q = _qpoints(unit)
    phonon.run_qpoints(q)
    reference = phonon.qpoints.frequencies
    assert reference.max() > 5.0
    assert np.abs(ours.frequencies(q) - reference).max() < 0.01  # THz


def test_same_force_constants_give_phonopys_frequencies_on_a_triclinic_cell(model):
    """Minimum-image phases and weights: a skewed 4-atom cell, non-diagonal supercell."""
    unit = random_crystal(4, seed=6)
    ours = compute_phonons(unit, model, [[2, 0, 0], [1, 2, 0], [0, 0, 1]])
    phonon = ours.to_phonopy()
    rng = np.random.default_rng(1)
    q = rng.uniform(-0.5, 0.5, (25, 3))
    phonon.run_qpoints(q)
    ours_nu = ours.frequencies(q)
    assert np.abs(ours_nu).max() > 1.0
    # rtol 1e-6: phonopy's THz conversion uses CODATA 2018, ASE's units CODATA 2014 (~1e-7)
    assert np.allclose(ours_nu, phonon.qpoints.frequencies, rtol=1e-6, atol=1e-9)
    order = ours.phonopy_order()
    assert np.allclose(phonon.force_constants, ours.full_force_constants()[np.ix_(order, order)])


def test_commensurate_points_are_exact_in_any_supercell():
    """At X and L, a 2×2×2 fcc supercell gives the same frequencies as a 4×4×4 one."""
    unit = bulk("Cu", "fcc", a=3.59)
    q = [(0.5, 0.0, 0.5), (0.5, 0.5, 0.5), (0.0, 0.5, 0.5)]
    small = compute_phonons(unit, EMT(), (2, 2, 2), delta=0.005).frequencies(q)
    large = compute_phonons(unit, EMT(), (4, 4, 4), delta=0.005).frequencies(q)
    assert small.min() > 3.0
    assert np.abs(small - large).max() < 1e-4
    # off the commensurate grid the two differ: the test above is not trivially true
    off = [(0.3, 0.1, 0.2)]
    assert (
        np.abs(
            compute_phonons(unit, EMT(), (2, 2, 2)).frequencies(off)
            - compute_phonons(unit, EMT(), (3, 3, 3)).frequencies(off)
        ).max()
        > 1e-3
    )


def test_thermal_properties_dos_and_export_match_phonopy(tmp_path):
    unit = bulk("Cu", "hcp", a=2.55, c=4.16)
    ours = compute_phonons(unit, EMT(), (3, 3, 2))
    gamma = ours.frequencies([(0, 0, 0)])[0]
    assert np.abs(gamma[:3]).max() < 1e-3  # acoustic sum rule
    temps = np.array([100.0, 300.0, 800.0])
    mesh = (8, 8, 6)
    thermal = ours.thermal_properties(temps, mesh)
    phonon = ours.to_phonopy()
    phonon.run_mesh(list(mesh), is_mesh_symmetry=False, is_gamma_center=True)
    phonon.run_thermal_properties(temperatures=temps, cutoff_frequency=1e-4)
    reference = phonon.thermal_properties
    # 1e-5: ASE (CODATA 2014) and phonopy (CODATA 2018) differ in k_B and N_A by ~1e-6
    for key in ("free_energy", "entropy", "heat_capacity"):
        assert np.allclose(thermal[key], getattr(reference, key), rtol=1e-5), key
    assert thermal["heat_capacity"][-1] < 3 * 2 * 8.314462618  # below Dulong–Petit, 2 atoms
    dos = ours.dos(mesh, sigma=0.2)
    integral = np.trapezoid(dos["dos"], dos["frequency"])
    assert abs(integral - 3 * len(unit)) < 1e-3 * 3 * len(unit)

    paths = ours.write_phonopy(tmp_path)
    assert [p.name for p in paths] == ["FORCE_CONSTANTS", "phonopy_params.yaml"]
    assert np.allclose(parse_FORCE_CONSTANTS(paths[0]), phonon.force_constants, atol=1e-12)
    import phonopy

    loaded = phonopy.load(paths[1], produce_fc=False, log_level=0)
    q = _qpoints(unit, 5)
    loaded.run_qpoints(q)
    assert np.allclose(loaded.qpoints.frequencies, ours.frequencies(q), rtol=1e-6, atol=1e-5)


def test_band_structure_follows_the_standard_path_and_flags_imaginary_modes():
    unit = bulk("Cu", "fcc", a=3.59)
    bands = compute_phonons(unit, EMT(), (2, 2, 2)).band_structure(npoints=60)
    assert bands["path"] == "GXWKGLUWLK,UX"
    assert bands["labels"][0] == "G" and "K|U" in bands["labels"]
    assert bands["frequencies"].shape == (60, 3)
    assert bands["frequencies"].min() > -1e-3
    # a compressed lattice far from equilibrium: a negative frequency stands for imaginary
    squeezed = compute_phonons(bulk("Cu", "fcc", a=4.6), EMT(), (2, 2, 2))
    assert squeezed.frequencies([(0.5, 0.0, 0.5)]).min() < -0.1
