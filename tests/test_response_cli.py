"""MD in an electric field and the spectra / dielectric command lines."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

import equipot
from equipot.cli.main import main
from equipot.sim import nve
from equipot.sim.field import ElectricField
from equipot.sim.potentials import ModelPotential
from equipot.sim.state import SimState

HEADS = {"dipole": {}, "polarizability": {"channels": 4}}


@pytest.fixture(scope="module")
def model():
    return equipot.build_model(
        ["H", "O", "Na", "Cl"],
        r_max=3.5,
        l_max=1,
        channels=8,
        num_layers=2,
        correlation=2,
        seed=4,
        radial_hidden=[16],
        heads=HEADS,
    )


def water() -> Atoms:
    return Atoms("OH2", positions=[[0, 0, 0.12], [0.76, 0, -0.47], [-0.76, 0, -0.47]])


def test_static_field_conserves_energy_and_changes_forces(model):
    field = ElectricField((0.0, 0.05, 0.1))
    potential = ModelPotential(model, efield=field)
    state = nve.init(SimState.from_atoms(water(), temperature=200.0, seed=1), potential)
    plain = nve.init(SimState.from_atoms(water(), temperature=200.0, seed=1), ModelPotential(model))
    assert float((state.forces - plain.forces).abs().max()) > 1e-6
    energies = []
    for _ in range(60):
        state = nve.step(state, potential, dt=0.2)
        energies.append(float(state.energy[0] + state.kinetic_energy()[0]))
    assert np.ptp(energies) < 2e-3


def test_oscillating_field_follows_time(model):
    field = ElectricField((0.0, 0.0, 0.2), frequency_thz=10.0)
    potential = ModelPotential(model, efield=field)
    state = SimState.from_atoms(water())
    calc = equipot.EquipotCalculator(model, efield=field.at(12.5))
    potential.set_time(12.5)
    assert float(potential(state).energy[0]) == pytest.approx(
        calc.get_potential_energy(water()), abs=1e-10
    )
    assert abs(field.at(25.0)[2] - 0.2 * np.cos(2 * np.pi * 0.25)) < 1e-14
    with pytest.raises(ValueError, match="needs a model with a 'dipole' head"):
        ModelPotential(equipot.build_model(["H", "O"], channels=4, radial_hidden=[8]), efield=field)


def test_spectra_and_md_command_lines(model, tmp_path):
    path = model.save(tmp_path / "m.eqp")
    write(tmp_path / "water.xyz", water())
    out = tmp_path / "harmonic"
    assert (
        main(
            [
                "spectra",
                str(path),
                str(tmp_path / "water.xyz"),
                "--ir",
                "--raman",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(out / "modes.csv")))
    assert len(rows) == 3 and {"ir_km_mol", "raman_A4_amu"} <= set(rows[0])
    assert (out / "spectra.png").stat().st_size > 0
    traj = tmp_path / "traj.extxyz"
    assert (
        main(
            [
                "md",
                str(path),
                str(tmp_path / "water.xyz"),
                "--steps",
                "64",
                "--timestep",
                "0.5",
                "--temperature",
                "300",
                "--efield",
                "0",
                "0",
                "0.02",
                "--efield-frequency",
                "5",
                "--write-every",
                "1",
                "--out",
                str(traj),
                "--log",
                str(tmp_path / "thermo.csv"),
                "--no-progress",
                "--seed",
                "2",
            ]
        )
        == 0
    )
    assert len(read(traj, ":")) == 65
    md = tmp_path / "md"
    assert main(["spectra", str(path), "--from-md", str(traj), "--out", str(md)]) == 0
    summary = json.loads((md / "spectra.json").read_text())
    assert summary["md"]["dt_fs"] == pytest.approx(0.5) and summary["md"]["frames"] == 65
    curve = [float(r["md_ir_normalised"]) for r in csv.DictReader(open(md / "spectrum.csv"))]
    assert max(curve) == pytest.approx(1.0)


def test_dielectric_command_line(model, tmp_path, capsys):
    path = model.save(tmp_path / "m.eqp")
    write(tmp_path / "nacl.cif", bulk("NaCl", "rocksalt", a=5.64))
    assert (
        main(["dielectric", str(path), str(tmp_path / "nacl.cif"), "--out", str(tmp_path / "d")])
        == 0
    )
    result = json.loads((tmp_path / "d" / "dielectric.json").read_text())
    eps = np.array(result["epsilon_inf"])
    assert np.allclose(eps, eps[0, 0] * np.eye(3), atol=1e-9)
    assert "ε₀" in capsys.readouterr().out
    assert main(["dielectric", str(path), str(tmp_path / "missing.cif")]) == 2
