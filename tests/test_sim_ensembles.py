"""Thermostats and barostat sample the right ensembles (against exact canonical values)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from equipot.sim import langevin, nose_hoover, npt
from equipot.sim.analytic import Harmonic, LennardJones
from equipot.sim.potentials import ASEPotential, ModelPotential
from equipot.sim.state import GPA, KB, SimState
from tests.sim_helpers import block_mean, block_variance


def _harmonic_systems(n_systems: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    systems = [
        Atoms("H2C2O2Cu2", positions=rng.uniform(0, 10, (8, 3)), cell=np.eye(3) * 10)
        for _ in range(n_systems)
    ]
    reference = torch.as_tensor(np.concatenate([a.positions for a in systems]))
    return systems, reference


def test_langevin_samples_canonical_kinetic_and_configurational_distributions():
    temperature, spring = 300.0, 2.0  # eV/Å², fastest period (H) 45 fs
    systems, reference = _harmonic_systems(24)
    pot = ModelPotential(Harmonic(reference, spring))
    state = langevin.init(SimState.from_atoms(systems, temperature=100.0, seed=1), pot, seed=2)
    assert state.dof.tolist() == [24.0] * 24  # Langevin thermalises the centre of mass too
    kinetic, squared = [], []
    for i in range(6000):
        state = langevin.step(state, pot, dt=1.0, temperature=temperature, tau=50.0)
        if i >= 500:
            kinetic.append(state.kinetic_energy().numpy())
            u2 = ((state.positions - reference) ** 2).sum(1)
            squared.append(state.sum_per_system(u2).numpy())
    kt, dof = KB * temperature, 24
    mean, se = block_mean(np.array(kinetic))
    assert abs(mean - 0.5 * dof * kt) < 4 * se and se < 0.01 * 0.5 * dof * kt
    var, se_var = block_variance(np.array(kinetic))
    assert abs(var - 0.5 * dof * kt**2) < 4 * se_var and se_var < 0.05 * 0.5 * dof * kt**2
    # positions: ⟨|u|²⟩ = 3 k_BT / k per atom (BAOAB is exact here)
    mean_u2, se_u2 = block_mean(np.array(squared))
    assert abs(mean_u2 - 8 * 3 * kt / spring) < 4 * se_u2


def test_langevin_relaxes_to_the_target_temperature():
    systems, reference = _harmonic_systems(4, seed=3)
    pot = ModelPotential(Harmonic(reference, 2.0))
    state = langevin.init(SimState.from_atoms(systems, remove_com=False), pot, seed=0)
    assert state.temperature().max() == 0.0
    temps = []
    for i in range(1500):
        state = langevin.step(state, pot, dt=1.0, temperature=600.0, tau=20.0)
        if i >= 500:
            temps.append(state.temperature().numpy())
    mean, se = block_mean(np.array(temps))
    assert abs(mean - 600.0) < 4 * se


def test_nose_hoover_chain_canonical_and_conserved():
    """LJ argon crystals (chaotic, momentum-conserving): K has the Gamma(dof/2) moments."""
    temperature = 40.0
    systems = []
    for s in range(4):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
        atoms.rattle(0.02, seed=s)
        systems.append(atoms)
    pot = ModelPotential(LennardJones(cutoff=6.0), skin=1.0)
    state = SimState.from_atoms(systems, temperature=temperature, seed=1)
    state = nose_hoover.init(state, pot, temperature=temperature, tau=200.0)
    assert state.dof.tolist() == [93.0] * 4
    kinetic, conserved = [], []
    for i in range(3000):
        state = nose_hoover.step(state, pot, dt=10.0, temperature=temperature)
        if i >= 300:
            kinetic.append(state.kinetic_energy().numpy())
        conserved.append(nose_hoover.conserved_energy(state, temperature).numpy())
    kt, dof = KB * temperature, 93
    mean, se = block_mean(np.array(kinetic))
    assert abs(mean - 0.5 * dof * kt) < 4 * se and se < 0.01 * 0.5 * dof * kt
    var, se_var = block_variance(np.array(kinetic))
    assert abs(var - 0.5 * dof * kt**2) < 4 * se_var and se_var < 0.1 * 0.5 * dof * kt**2
    conserved = np.array(conserved)
    fluctuation = np.sqrt(0.5 * dof) * kt  # the kinetic energy's own fluctuation
    assert np.abs(conserved - conserved[0]).max() < 0.05 * fluctuation
    assert abs(state.sum_per_system(state.momenta)).max() < 1e-10  # momentum conserved


def test_npt_emt_copper_pressure_and_volume_fluctuations():
    """C-rescale + Langevin on EMT Cu: ⟨P⟩ = P₀ and ⟨δV²⟩ = k_BT V / B with B the EMT bulk
    modulus at the mean volume (from energies of uniformly scaled cells)."""
    temperature, target = 300.0, 1.0  # K, GPa
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    pot = ASEPotential(EMT())
    state = npt.init(SimState.from_atoms(atoms, temperature=temperature, seed=0), pot, seed=1)
    volume, pressure = [], []
    for i in range(1800):
        state = npt.step(
            state,
            pot,
            dt=5.0,
            temperature=temperature,
            pressure=target,
            tau=100.0,
            barostat_tau=50.0,
            bulk_modulus=140.0,
        )
        if i >= 300:
            volume.append(state.volume().item())
            pressure.append(npt.instantaneous_pressure(state).item() / GPA)
    p_mean, p_se = block_mean(np.array(pressure))
    assert abs(p_mean - target) < 4 * p_se and p_se < 0.2
    v_mean = float(np.mean(volume))
    scales = np.linspace(0.98, 1.02, 7)
    volumes, energies = [], []
    for s in scales:
        b = atoms.copy()
        b.set_cell(atoms.cell * (v_mean / atoms.get_volume()) ** (1 / 3) * s, scale_atoms=True)
        b.calc = EMT()
        volumes.append(b.get_volume())
        energies.append(b.get_potential_energy())
    curvature = np.polyval(np.polyder(np.polyfit(volumes, energies, 4), 2), v_mean)
    bulk_modulus = v_mean * curvature  # eV/Å³
    expected = KB * temperature * v_mean / bulk_modulus
    ratio = np.var(volume) / expected
    assert 0.7 < ratio < 1.4, ratio
