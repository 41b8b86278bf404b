"""IR and Raman: fixed-charge models vs analytic intensities, Raman invariants, MD lineshape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from scipy.spatial.transform import Rotation

import equipot
from equipot.properties.spectra import (
    CM_PER_FS,
    KM_PER_MOL,
    born_charges,
    dipole_spectrum,
    harmonic_spectrum,
    polarizability_derivatives,
)


def fixed_charge_model(elements: list[str], charges: list[float], seed: int = 0):
    """A model whose dipole is exactly Σ q_i r_i with fixed charges (environment-dependent
    outputs switched off, per-element offsets = q), plus a polarizability head."""
    model = equipot.build_model(
        elements,
        r_max=4.0,
        l_max=2,
        channels=8,
        num_layers=2,
        correlation=2,
        seed=seed,
        radial_hidden=[16, 16],
        heads={"dipole": {}, "polarizability": {"channels": 4}},
    )
    head = model.heads.heads["dipole"]
    with torch.no_grad():
        for w in head.mixing:
            w.zero_()
        head.charges.copy_(torch.tensor(charges, dtype=torch.float64) / head.config.scale)
    return model


def test_km_per_mol_constant():
    assert KM_PER_MOL == pytest.approx(974.88, rel=1e-4)  # 1 e²/amu = 42.2561 (D/Å)²/amu·23.07


def test_diatomic_intensity_is_q_squared_over_reduced_mass():
    q = 0.37
    model = fixed_charge_model(["C", "O"], [q, -q])
    atoms = Atoms("CO", positions=[[0, 0, 0], [0.3, -0.2, 1.15]])
    z = born_charges(model, atoms)
    assert np.abs(z - np.array([q, -q])[:, None, None] * np.eye(3)).max() < 1e-12
    spectrum = harmonic_spectrum(model, atoms, raman=False)
    m = atoms.get_masses()
    assert len(spectrum.frequencies_cm) == 1
    assert spectrum.ir_intensities[0] == pytest.approx(
        KM_PER_MOL * q**2 * (1 / m[0] + 1 / m[1]), rel=1e-10
    )


def test_linear_triatomic_intensities_fixed_by_symmetry():
    """O=C=O with q_C = −2 q_O: symmetric stretch dark, the antisymmetric stretch and both
    bends 2 q_O² (1 + 2 m_O/m_C) / m_O whatever the force field."""
    q_o = -0.41
    model = fixed_charge_model(["C", "O"], [-2 * q_o, q_o], seed=3)
    atoms = Atoms("OCO", positions=[[0, 0, -1.16], [0, 0, 0], [0, 0, 1.16]])
    atoms.rotate(37, (1, 2, 3))  # arbitrary orientation
    spectrum = harmonic_spectrum(model, atoms, raman=False)
    m_c, m_o = atoms.get_masses()[1], atoms.get_masses()[0]
    active = KM_PER_MOL * 2 * q_o**2 * (1 + 2 * m_o / m_c) / m_o
    intensities = np.sort(spectrum.ir_intensities)
    assert len(intensities) == 4  # 3N − 5
    assert intensities[0] < 1e-9 * active  # symmetric stretch
    assert np.allclose(intensities[1:], active, rtol=1e-9)


def test_raman_activities_rotation_invariant_and_derivatives_exact():
    model = fixed_charge_model(["H", "O"], [0.4, -0.8], seed=5)
    atoms = Atoms("OH2", positions=[[0, 0, 0.1], [0.76, 0, -0.45], [-0.74, 0.05, -0.48]])
    ref = harmonic_spectrum(model, atoms)
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ Rotation.random(random_state=2).as_matrix().T
    other = harmonic_spectrum(model, rotated)
    assert np.allclose(other.frequencies_cm, ref.frequencies_cm, rtol=1e-8)
    for a, b in (
        (ref.raman_activities, other.raman_activities),
        (ref.ir_intensities, other.ir_intensities),
    ):
        assert np.allclose(a, b, rtol=1e-7, atol=1e-12 * np.abs(a).max())
    assert np.all(ref.raman_activities >= 0) and np.all(ref.depolarization <= 0.75 + 1e-12)
    d = polarizability_derivatives(model, atoms)
    h = 1e-5
    for i, c in [(0, 2), (2, 0)]:
        alphas = []
        for s in (1, -1):
            moved = atoms.copy()
            moved.positions[i, c] += s * h
            moved.calc = equipot.EquipotCalculator(model)
            alphas.append(moved.calc.get_property("polarizability", moved))
        fd = (alphas[0] - alphas[1]) / (2 * h) / (4 * np.pi * units._eps0 / units._e * 1e-10)
        assert np.abs(fd - d[i, :, :, c]).max() < 1e-6 * max(np.abs(d).max(), 1e-12)


def test_dipole_spectrum_peaks_where_the_signal_oscillates():
    dt = 0.5  # fs
    t = np.arange(8000) * dt
    bands = {1000.0: 1.0, 2200.0: 0.5}  # cm⁻¹: amplitude of μ
    mu = np.zeros((len(t), 3))
    for k, (nu, amplitude) in enumerate(bands.items()):
        mu[:, k] = amplitude * np.cos(2 * np.pi * nu / CM_PER_FS * t)
    wavenumbers, intensity = dipole_spectrum(mu, dt)
    peaks = [
        wavenumbers[np.argmax(np.where(abs(wavenumbers - nu) < 100, intensity, 0))] for nu in bands
    ]
    resolution = CM_PER_FS / (t[-1] + dt)
    assert np.allclose(peaks, list(bands), atol=resolution)
    # weight ∝ (amplitude·ν)² (the spectrum of μ̇), integrated over each band
    weights = [intensity[abs(wavenumbers - nu) < 50].sum() for nu in bands]
    expected = [(a * nu) ** 2 for nu, a in bands.items()]
    assert weights[1] / weights[0] == pytest.approx(expected[1] / expected[0], rel=0.02)
    with pytest.raises(ValueError, match="shape"):
        dipole_spectrum(mu[:5], dt)
