"""Scans (coordinates, rigid/relaxed runs) and the hole / erratic-force detector."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.morse import MorsePotential

import equipot
from equipot.cli.main import main
from equipot.scan import Coordinate, check_scan, run_scan, torsion_values
from tests.conftest import small_model


def _torsion_profile(phi_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth three-fold torsion potential E = ½ V (1 − cos 3φ) and −dE/dφ per degree."""
    phi = np.radians(phi_deg)
    energy = 0.5 * 0.12 * (1 - np.cos(3 * phi))
    force = -0.5 * 0.12 * 3 * np.sin(3 * phi) * np.pi / 180
    return energy, force


def test_detector_passes_a_smooth_scan():
    phi = np.arange(0.0, 361.0, 10.0)
    energy, force = _torsion_profile(phi)
    check = check_scan(phi, energy, force, unit="deg")
    assert check.ok and check.drop == pytest.approx(0.0, abs=1e-12)


def test_detector_flags_a_hand_made_hole():
    phi = np.arange(0.0, 361.0, 10.0)
    energy, force = _torsion_profile(phi)
    dip = -2.4 * np.exp(-(((phi - 240.0) / 25.0) ** 2))  # 2.4 eV below the start, as issue 10
    d_dip = dip * -2 * (phi - 240.0) / 25.0**2  # d(dip)/dφ per degree
    check = check_scan(phi, energy + dip, force - d_dip, unit="deg")
    assert check.hole and not check.ok
    assert check.drop == pytest.approx(2.4, abs=0.01)
    assert "240" in check.messages[0]


def test_detector_flags_erratic_forces():
    phi = np.arange(0.0, 361.0, 10.0)
    energy, force = _torsion_profile(phi)
    noisy_force = force.copy()
    noisy_force[10:13] = [0.05, -0.05, 0.05]  # flips sign at consecutive points
    check = check_scan(phi, energy, noisy_force)
    assert check.erratic and 11 in check.sign_flips
    # energies that jump while the forces stay smooth are inconsistent with them
    jumpy = energy.copy()
    jumpy[20] += 0.3
    check = check_scan(phi, jumpy, force)
    assert check.erratic and {19, 20} <= set(check.inconsistent)


def test_stretch_matches_the_analytic_morse_curve():
    """Rigid stretch of a Morse dimer: energies and the generalised force −dV/dr."""
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.0]])
    calc = MorsePotential(epsilon=2.0, r0=1.1, rho0=6.0, rcut1=10.0, rcut2=11.0)
    coordinate = Coordinate.stretch(atoms, (0, 1))
    assert coordinate.moving == (1,)
    distances = np.linspace(0.9, 2.5, 17)
    scan = run_scan(atoms, calc, coordinate, distances)
    x = np.exp(6.0 * (1 - distances / 1.1))
    assert scan.energies == pytest.approx(2.0 * x * (x - 2.0), abs=1e-9)
    dvdr = 2.0 * (-6.0 / 1.1) * (2 * x * x - 2 * x)
    assert scan.generalized_forces == pytest.approx(-dvdr, abs=1e-6)
    assert [f.get_distance(0, 1) for f in scan.frames] == pytest.approx(distances)


def test_torsion_moves_one_side_and_its_force_is_the_energy_slope():
    ethanol = molecule("CH3CH2OH")
    c, o = 1, 2  # ASE's ethanol: C(H2) 1, O 2; torsion H-C-O-H about the C-O bond
    h_o = next(
        a
        for a in range(len(ethanol))
        if ethanol[a].symbol == "H" and ethanol.get_distance(o, a) < 1.1
    )
    first = next(
        a for a in range(len(ethanol)) if a not in (c, o, h_o) and ethanol.get_distance(c, a) < 1.6
    )
    coordinate = Coordinate.torsion(ethanol, (first, c, o, h_o))
    assert set(coordinate.moving) == {o, h_o}
    model = small_model(shift=0.0, seed=5)
    calc = equipot.EquipotCalculator(model)
    values = torsion_values(coordinate.value(ethanol), 2.0, 40.0)
    scan = run_scan(ethanol, calc, coordinate, values)
    assert [f.get_dihedral(first, c, o, h_o) for f in scan.frames] == pytest.approx(
        values % 360.0, abs=1e-8
    )
    slope = np.gradient(scan.energies, 2.0)
    assert scan.generalized_forces[1:-1] == pytest.approx(-slope[1:-1], rel=0.02, abs=1e-4)
    # the fixed side did not move
    fixed = [a for a in range(len(ethanol)) if a not in coordinate.moving]
    assert np.allclose(scan.frames[-1].positions[fixed], ethanol.positions[fixed])


def test_relaxed_torsion_holds_the_angle_and_relaxes_the_rest():
    ethanol = molecule("CH3CH2OH")
    model = small_model(shift=0.0, seed=5)
    calc = equipot.EquipotCalculator(model)
    torsion = (0, 1, 2, 3)  # C-C-O-H
    coordinate = Coordinate.torsion(ethanol, torsion)
    values = torsion_values(coordinate.value(ethanol), 60.0, 120.0)
    rigid = run_scan(ethanol, calc, coordinate, values)
    relaxed = run_scan(ethanol, calc, coordinate, values, relax=True, fmax=0.01, steps=500)
    assert relaxed.converged.all()
    assert [f.get_dihedral(*torsion) for f in relaxed.frames] == pytest.approx(
        values % 360.0, abs=1e-3
    )
    assert np.all(relaxed.energies <= rigid.energies + 1e-9)
    others = [a for a in range(len(ethanol)) if a not in torsion]
    for frame in relaxed.frames:  # the constraint force acts on the torsion's atoms only
        assert np.abs(frame.arrays["forces"][others]).max() < 0.02


def test_relaxed_point_whose_constraint_fails_is_reported_not_fatal(monkeypatch):
    """FixInternals raises when it cannot project a step (a model's huge forces far outside its
    data): the scan goes on, that point keeps a geometry on the constraint, flagged."""
    from ase.constraints import FixInternals

    ethanol = molecule("CH3CH2OH")
    calc = equipot.EquipotCalculator(small_model(shift=0.0, seed=5))
    coordinate = Coordinate.torsion(ethanol, (0, 1, 2, 3))
    values = torsion_values(coordinate.value(ethanol), 60.0, 180.0)
    calls = {"n": 0}
    original = FixInternals.adjust_positions

    def failing_on_the_second_point(self, atoms, new):
        calls["n"] += 1
        if abs(atoms.get_dihedral(0, 1, 2, 3) - values[1] % 360.0) < 1e-6:
            raise ValueError("FixInternals.adjust_positions did not converge.")
        return original(self, atoms, new)

    monkeypatch.setattr(FixInternals, "adjust_positions", failing_on_the_second_point)
    scan = run_scan(ethanol, calc, coordinate, values, relax=True, fmax=0.01, steps=500)
    assert calls["n"] > 0
    assert scan.converged.tolist() == [True, False, True, True]
    assert np.isfinite(scan.energies).all()
    assert scan.frames[1].get_dihedral(0, 1, 2, 3) == pytest.approx(values[1] % 360.0, abs=1e-6)
    assert not scan.frames[1].constraints  # the constraint is removed after a failed point


def test_torsion_whose_last_atom_does_not_turn_is_refused():
    ethanol = molecule("CH3CH2OH")  # H 8 sits on C 0, so turning about C1-O2 leaves 0-1-2-8 fixed
    with pytest.raises(ValueError, match="atom 8 is not on the turning side"):
        Coordinate.torsion(ethanol, (0, 1, 2, 8))


def test_torsion_in_a_ring_is_refused():
    benzene = molecule("C6H6")
    with pytest.raises(ValueError, match="ring"):
        Coordinate.torsion(benzene, (0, 1, 2, 3))
    with pytest.raises(ValueError, match="out of range"):
        Coordinate.torsion(benzene, (0, 1, 2, 30))


def test_scan_cli_writes_json_and_plot(tmp_path, capsys):
    model = small_model(shift=0.0, seed=2)
    path = model.save(tmp_path / "m.eqp")
    structure = tmp_path / "ethanol.xyz"
    molecule("CH3CH2OH").write(structure)
    out = tmp_path / "scan.json"
    code = main(
        [
            "scan",
            str(path),
            str(structure),
            "--stretch",
            "2",
            "8",
            "--points",
            "12",
            "--to",
            "4.0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["coordinate"] == "stretch" and len(record["energy_eV"]) == 12
    assert record["relaxed"] is False and "ok" in record["check"]
    assert (tmp_path / "scan.png").stat().st_size > 1000
    code = main(
        [
            "scan",
            str(path),
            str(structure),
            "--torsion",
            "0",
            "1",
            "2",
            "3",
            "--step",
            "90",
            "--out",
            str(tmp_path / "t.json"),
            "--fmax",
            "0.05",
        ]
    )
    assert code == 0 and json.loads((tmp_path / "t.json").read_text())["relaxed"] is True
    assert main(["scan", str(path), str(structure), "--stretch", "2", "2"]) == 2
    assert "must differ" in capsys.readouterr().err
