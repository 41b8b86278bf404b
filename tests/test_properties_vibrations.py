"""Vibrations against ase.vibrations, an analytic diatomic, and ASE's harmonic thermochemistry."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import read
from ase.optimize import BFGS
from ase.thermochemistry import HarmonicThermo
from ase.vibrations import Vibrations

from equipot.physics.modes import rigid_body_modes
from equipot.properties.hessians import OMEGA_TO_THZ, THZ_TO_CM
from equipot.properties.vibrations import (
    harmonic_thermo,
    modes_from_force_constants,
    vibrational_modes,
    write_modes,
)

MOLECULES = {
    "H2O": lambda: molecule("H2O"),
    "NH3": lambda: molecule("NH3"),
    "Cu4": lambda: Atoms("Cu4", positions=[[0, 0, 0], [2.4, 0, 0], [1.2, 2.0, 0], [1.2, 0.7, 2]]),
    "CO2": lambda: molecule("CO2"),  # linear, with imaginary bending modes under EMT
    "N2": lambda: Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]]),
}
EXPECTED_MODES = {"H2O": 3, "NH3": 6, "Cu4": 6, "CO2": 4, "N2": 1}


def _relaxed(name: str) -> Atoms:
    atoms = MOLECULES[name]()
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=500)
    return atoms


@pytest.mark.parametrize("name", sorted(MOLECULES))
def test_matches_ase_vibrations(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atoms = _relaxed(name)
    ours = vibrational_modes(atoms, EMT(), delta=0.01)
    assert len(ours.frequencies_cm) == EXPECTED_MODES[name]
    vib = Vibrations(atoms, name="vib", delta=0.01, nfree=2)
    vib.run()
    freq = vib.get_frequencies()  # complex: imaginary modes have an imaginary part
    signed = np.where(np.abs(freq.imag) > 0, -np.abs(freq), freq.real)
    # ASE keeps the six (five) near-zero rigid modes: compare the largest |ν|
    keep = np.argsort(np.abs(freq))[-len(ours.frequencies_cm) :]
    reference = np.sort(signed[keep])
    assert np.abs(ours.frequencies_cm - reference).max() < 0.01  # cm⁻¹
    if name == "CO2":
        assert len(ours.imaginary) == 2 and np.all(ours.frequencies_cm[:2] < 0)
    else:
        assert len(ours.imaginary) == 0


def test_modes_are_orthogonal_to_rigid_motion():
    atoms = _relaxed("NH3")
    result = vibrational_modes(atoms, EMT(), delta=0.01)
    masses = atoms.get_masses()
    rigid = rigid_body_modes(atoms.positions, masses)
    weighted = result.modes.reshape(len(result.modes), -1) * np.sqrt(np.repeat(masses, 3))
    assert np.abs(weighted @ rigid.T).max() < 1e-10


@pytest.mark.parametrize("k", [12.0, -3.0])
def test_diatomic_spring_frequency_is_analytic(k):
    """A spring k between masses m1, m2: ν = √(k/μ)/2π, negative (imaginary) for k < 0."""
    atoms = Atoms("CuH", positions=[[0, 0, 0], [0, 0, 1.5]])
    u = np.zeros((6, 1))
    u[2], u[5] = -1, 1
    phi = k * (u @ u.T)
    result = modes_from_force_constants(atoms, phi)
    mu = np.prod(atoms.get_masses()) / atoms.get_masses().sum()
    expected = np.sign(k) * np.sqrt(abs(k) / mu) * OMEGA_TO_THZ
    assert result.frequencies_thz.shape == (1,)
    assert abs(result.frequencies_thz[0] - expected) < 1e-10 * abs(expected)
    assert abs(result.frequencies_cm[0] - expected * THZ_TO_CM) < 1e-8
    mode = result.modes[0]
    assert np.abs(mode[:, :2]).max() < 1e-12  # along the bond
    assert abs(atoms.get_masses() @ mode[:, 2]) < 1e-12  # centre of mass at rest
    assert (len(result.imaginary) == 1) == (k < 0)


def test_thermochemistry_matches_ase_harmonic_thermo():
    energies = np.array([0.012, 0.05, 0.1, 0.25])
    thermo = HarmonicThermo(energies)
    temps = np.array([50.0, 300.0, 1000.0])
    ours = harmonic_thermo(energies, temps)
    for index, t in enumerate(temps):
        assert np.isclose(ours["U"][index], thermo.get_internal_energy(t, verbose=False))
        assert np.isclose(ours["S"][index], thermo.get_entropy(t, verbose=False))
        assert np.isclose(ours["F"][index], thermo.get_helmholtz_energy(t, verbose=False))
    assert np.isclose(ours["ZPE"][0], thermo.get_ZPE_correction())
    # high-temperature limit of the heat capacity: k_B per mode
    hot = harmonic_thermo(energies, 1e6)
    assert np.isclose(hot["Cv"][0], len(energies) * units.kB, rtol=1e-6)
    with pytest.warns(UserWarning, match="imaginary"):
        harmonic_thermo(np.array([-0.01, 0.05]), 300.0)


def test_modes_written_as_extxyz(tmp_path):
    atoms = _relaxed("H2O")
    result = vibrational_modes(atoms, EMT(), delta=0.01)
    path = write_modes(tmp_path / "modes.extxyz", result)
    frames = read(path, index=":")
    assert len(frames) == 3
    for frame, mode, cm in zip(frames, result.modes, result.frequencies_cm, strict=True):
        assert np.allclose(frame.arrays["mode"], mode)
        assert np.isclose(frame.info["frequency_cm"], cm)
        assert np.allclose(frame.positions, atoms.positions)
