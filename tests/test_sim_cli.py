"""``equipot md / relax / neb`` end to end on a tiny model (few steps: plumbing, outputs,
error messages)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.io import read, write

from equipot.cli.main import main
from equipot.sim.trajectory import read_thermo
from tests.conftest import small_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim_cli")
    small_model().save(root / "model.eqp")
    write(root / "water.xyz", molecule("H2O"))
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True)
    crystal.rattle(0.02, seed=0)
    write(root / "cu.extxyz", crystal)
    return root


def _md(files, tmp_path, *extra):
    log, out = tmp_path / "thermo.csv", tmp_path / "traj.extxyz"
    argv = ["md", str(files / "model.eqp"), *extra, "--out", str(out), "--log", str(log)]
    code = main([*argv, "--no-progress", "--log-every", "5", "--write-every", "5"])
    return code, read_thermo(log), out, log.with_suffix(".png")


def test_md_nve_with_auto_timestep(files, tmp_path, capsys):
    code, thermo, out, png = _md(
        files,
        tmp_path,
        str(files / "water.xyz"),
        "--steps",
        "10",
        "--timestep",
        "auto",
        "--temperature",
        "300",
        "--seed",
        "0",
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "cm⁻¹" in printed and "ns/day" in printed
    assert thermo["step"].tolist() == [0, 5, 10]
    assert abs(thermo["temperature_K"][0] - 300.0) < 1e-6  # initial velocities rescaled
    assert len(read(out, ":")) == 3 and png.stat().st_size > 1000


def test_md_nvt_nose_hoover_and_npt(files, tmp_path):
    code, thermo, _, _ = _md(
        files,
        tmp_path,
        str(files / "cu.extxyz"),
        "--ensemble",
        "nvt",
        "--thermostat",
        "nose-hoover",
        "--temperature",
        "300",
        "--timestep",
        "2",
        "--steps",
        "10",
    )
    assert code == 0 and "conserved_eV" in thermo
    code, thermo, out, png = _md(
        files,
        tmp_path,
        str(files / "cu.extxyz"),
        "--ensemble",
        "npt",
        "--temperature",
        "300",
        "--pressure",
        "2",
        "--timestep",
        "2",
        "--steps",
        "10",
        "--barostat-tau",
        "50",
        "--seed",
        "1",
    )
    assert code == 0 and {"volume_A3", "pressure_GPa"} <= set(thermo)
    frames = read(out, ":")
    assert frames[0].get_volume() != frames[-1].get_volume()
    assert png.stat().st_size > 1000


def test_md_pimd(files, tmp_path):
    """The CLI run is the library's ring-polymer run (same beads, T, τ, Δt, seed: the same
    thermo to rounding), and with one bead the centroid-virial kinetic energy is exactly the
    classical 3N k_B T / 2 while four beads add a quantum (virial) correction."""
    from equipot.model.io import load_model
    from equipot.sim import pimd
    from equipot.sim.potentials import ModelPotential
    from equipot.sim.runner import thermo_rows
    from equipot.sim.state import KB, SimState

    args = ["--ensemble", "pimd", "--temperature", "300", "--timestep", "0.25"]
    code, thermo, out, _ = _md(
        files, tmp_path, str(files / "water.xyz"), *args, "--beads", "4", "--steps", "10",
        "--seed", "3",
    )  # fmt: skip
    assert code == 0
    potential = ModelPotential(load_model(files / "model.eqp"), dtype="float64", skin=1.0)
    state = SimState.from_atoms(read(files / "water.xyz"), temperature=300.0, seed=3)
    state = pimd.init(state, potential, n_beads=4, temperature=300.0, seed=3)
    expected = []
    for i in range(1, 11):
        state = pimd.step(state, potential, dt=0.25, temperature=300.0, tau=100.0)
        if i % 5 == 0:
            expected += thermo_rows(state, i, i * 0.25, 300.0)
    for key in ("kinetic_eV", "potential_eV", "total_eV", "temperature_K"):
        got = np.asarray(thermo[key])[1:]
        want = np.array([row[key] for row in expected])
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=key)
    frames = read(out, ":")
    assert len(frames) == 3 and len(frames[-1]) == 3  # centroid frames of the molecule
    centroid = pimd.centroid(state).positions.detach().numpy()
    np.testing.assert_allclose(frames[-1].positions, centroid, atol=1e-6)
    classical = 1.5 * 3 * KB * 300.0
    assert np.ptp(thermo["kinetic_eV"]) > 0 and abs(thermo["kinetic_eV"][-1] - classical) > 1e-6
    (tmp_path / "p1").mkdir()
    code, one_bead, _, _ = _md(
        files, tmp_path / "p1", str(files / "water.xyz"), *args, "--beads", "1", "--steps", "5",
        "--seed", "3",
    )  # fmt: skip
    assert code == 0
    np.testing.assert_allclose(one_bead["kinetic_eV"], classical, rtol=1e-12)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ensemble", "nvt", "--timestep", "1"], "needs --temperature"),
        (["--beads", "4", "--timestep", "1"], "--beads needs --ensemble pimd"),
        (["--timestep", "fast"], "--timestep must be a number"),
        (["--timestep", "1", "--pressure", "1"], "--pressure applies to --ensemble npt"),
        (
            ["--ensemble", "nvt", "--temperature", "300", "--timestep", "1", "--pressure", "1"],
            "--pressure applies to --ensemble npt",
        ),
        (
            [
                "--ensemble",
                "npt",
                "--temperature",
                "300",
                "--timestep",
                "1",
                "--thermostat",
                "nose-hoover",
            ],
            "--thermostat applies to --ensemble nvt",
        ),
        (["--timestep", "1", "--tau", "50"], "--tau applies to the thermostats"),
        (
            [
                "--ensemble",
                "nvt",
                "--temperature",
                "300",
                "--timestep",
                "1",
                "--barostat-tau",
                "10",
            ],
            "--barostat-tau applies to the barostat of --ensemble npt",
        ),
        (["--timestep", "1", "--seed", "4"], "--seed applies to random numbers"),
    ],
)
def test_md_reports_bad_options(files, tmp_path, capsys, extra, message):
    argv = ["md", str(files / "model.eqp"), str(files / "water.xyz"), "--steps", "2", *extra]
    assert main([*argv, "--log", str(tmp_path / "t.csv"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_md_missing_model_file(files, capsys):
    assert main(["md", str(files / "nope.eqp"), str(files / "water.xyz"), "--steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_relax_cli(files, tmp_path, capsys):
    out = tmp_path / "relaxed.extxyz"
    code = main(
        [
            "relax",
            str(files / "model.eqp"),
            str(files / "cu.extxyz"),
            "--method",
            "fire",
            "--fmax",
            "1e-6",
            "--steps",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 1  # three steps do not reach 1e-6 eV/Å: reported, non-zero exit
    assert "NOT converged after 3 iterations" in capsys.readouterr().out
    relaxed = read(out)
    assert relaxed.info["iterations"] == 3 and len(relaxed) == 4


def test_relax_cli_newton_with_hessian_refresh(files, tmp_path, capsys):
    """--hessian-refresh reaches the optimiser: exact Hessians only every 10 accepted steps
    (BFGS-updated between) converge with fewer Hessians than Newton proper."""
    printed = {}
    for name, extra in (("newton", []), ("refresh", ["--hessian-refresh", "10"])):
        out = tmp_path / f"{name}.extxyz"
        argv = ["relax", str(files / "model.eqp"), str(files / "water.xyz"), "--method",
                "newton", "--fmax", "1e-4", "--out", str(out), *extra]  # fmt: skip
        assert main(argv) == 0
        printed[name] = capsys.readouterr().out
    hessians = {k: int(v.split(" Hessians")[0].split()[-1]) for k, v in printed.items()}
    assert hessians["refresh"] < hessians["newton"], printed


def test_neb_cli(files, tmp_path, capsys):
    """A band that converges exits 0 and its barrier is the energy of its highest image
    (recomputed here with the calculator); one that cannot in the steps given exits 1."""
    from equipot.calculator import EquipotCalculator

    initial = bulk("Cu", "fcc", a=3.61, cubic=True)
    final = initial.copy()
    final.positions[0] += [0.1, 0.0, 0.0]
    write(tmp_path / "a.extxyz", initial)
    write(tmp_path / "b.extxyz", final)
    out = tmp_path / "neb.json"
    argv = ["neb", str(files / "model.eqp"), str(tmp_path / "a.extxyz"), str(tmp_path / "b.extxyz"),
            "--images", "2", "--climb", "--out", str(out)]  # fmt: skip
    assert main([*argv, "--steps", "500", "--fmax", "0.05"]) == 0
    printed = capsys.readouterr().out
    assert "barrier" in printed and "NOT converged" not in printed
    data = json.loads(out.read_text())
    band = read(out.with_suffix(".extxyz"), ":")
    assert len(band) == len(data["energies_eV"]) == 4
    calc = EquipotCalculator(files / "model.eqp")
    energies = []
    for atoms in band:
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    np.testing.assert_allclose(data["energies_eV"], energies, rtol=0, atol=1e-8)
    assert data["relative_energies_eV"][0] == 0.0
    assert data["barrier_eV"] == pytest.approx(max(energies) - energies[0], abs=1e-8)
    assert out.with_suffix(".png").stat().st_size > 1000
    assert main([*argv, "--steps", "1", "--fmax", "1e-6"]) == 1
    assert "NOT converged" in capsys.readouterr().out
