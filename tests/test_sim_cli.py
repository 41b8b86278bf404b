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
    code, thermo, out, _ = _md(
        files,
        tmp_path,
        str(files / "water.xyz"),
        "--ensemble",
        "pimd",
        "--beads",
        "4",
        "--temperature",
        "300",
        "--timestep",
        "0.25",
        "--steps",
        "10",
    )
    assert code == 0
    # centroid-virial kinetic energy: 3N k_BT/2 plus a (here non-zero) quantum correction
    assert (thermo["kinetic_eV"] > 0).all() and np.ptp(thermo["kinetic_eV"]) > 0
    assert len(read(out, "-1")) == 3  # centroid frames of the physical molecule


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ensemble", "nvt", "--timestep", "1"], "needs --temperature"),
        (["--beads", "4", "--timestep", "1"], "--beads needs --ensemble pimd"),
        (["--timestep", "fast"], "--timestep must be a number"),
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


def test_neb_cli(files, tmp_path, capsys):
    initial = bulk("Cu", "fcc", a=3.61, cubic=True)
    final = initial.copy()
    final.positions[0] += [0.1, 0.0, 0.0]
    write(tmp_path / "a.extxyz", initial)
    write(tmp_path / "b.extxyz", final)
    out = tmp_path / "neb.json"
    code = main(
        [
            "neb",
            str(files / "model.eqp"),
            str(tmp_path / "a.extxyz"),
            str(tmp_path / "b.extxyz"),
            "--images",
            "2",
            "--climb",
            "--steps",
            "5",
            "--out",
            str(out),
        ]
    )
    assert code in (0, 1)
    data = json.loads(out.read_text())
    assert len(data["energies_eV"]) == 4 and "barrier_eV" in data
    assert data["relative_energies_eV"][0] == 0.0
    assert out.with_suffix(".png").stat().st_size > 1000
    assert len(read(out.with_suffix(".extxyz"), ":")) == 4
    assert "barrier" in capsys.readouterr().out
