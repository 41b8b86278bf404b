"""Uncertainty-aware MD: per-step uncertainties in the log, alarms on an out-of-distribution
frame (CLI and Python)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import read, write

import equipot
from equipot.cli.main import main
from equipot.data import DataSource, GraphDataset, open_cache
from equipot.sim.runner import run as run_md
from equipot.sim.state import SimState
from equipot.sim.uncertain import Alarm, UncertainPotential
from equipot.uq.workflow import calibrate_models, fit_model
from tests.train_utils import write_emt


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A Cu model whose latent fit and force ball come from rattled fcc cells."""
    tmp = tmp_path_factory.mktemp("md_alarm")
    model = equipot.build_model(
        ["Cu"], r_max=3.5, l_max=1, channels=8, radial_hidden=[16, 16], correlation=2, seed=3
    )
    datasets = []
    for name, n, seed in (("train", 30, 0), ("calib", 48, 1)):
        path = write_emt(tmp / f"{name}.xyz", n=n, seed=seed, elements=("Cu",))
        datasets.append(GraphDataset(open_cache(DataSource(path=path), 3.5, tmp / "cache")))
    fit_model(model, datasets[0], {}, force_frames=10)
    model.uncertainty, _ = calibrate_models([model], None, datasets[1], alpha=0.1)
    return model.save(tmp / "model.eqp")


def _in_distribution():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.rattle(0.03, seed=1)
    return atoms


def _out_of_distribution():
    """Hand-made: the same cell with one pair of atoms pushed to 1.6 Å."""
    atoms = _in_distribution()
    d = atoms.positions[1] - atoms.positions[0]
    atoms.positions[1] = atoms.positions[0] + d / np.linalg.norm(d) * 1.6
    return atoms


def _thresholds(model_file):
    """Limits just above what the in-distribution frame reaches (its largest R_i and d_i)."""
    calc = equipot.EquipotCalculator(model_file)
    atoms = _in_distribution()
    atoms.calc = calc
    atoms.get_forces()
    return 1.5 * calc.results["force_radius"].max(), 1.5 * calc.results["latent_distance"].max()


def test_alarm_fires_on_out_of_distribution_frame(model_file, tmp_path):
    radius, distance = _thresholds(model_file)
    calc = equipot.EquipotCalculator(model_file)
    ood = _out_of_distribution()
    ood.calc = calc
    ood.get_forces()
    assert calc.results["latent_distance"].max() > distance
    assert calc.results["force_radius"].max() > radius

    for kind, limit in (("--max-force-radius", radius), ("--max-latent-distance", distance)):
        start = tmp_path / "start.xyz"
        write(start, _in_distribution())
        args = [
            str(model_file),
            "--ensemble",
            "nve",
            "--timestep",
            "0.5",
            "--steps",
            "4",
            "--write-every",
            "2",
            "--log-every",
            "1",
            "--no-progress",
            kind,
            str(limit),
        ]
        out = tmp_path / f"calm{kind}.extxyz"
        assert (
            main(
                [
                    "md",
                    args[0],
                    str(start),
                    *args[1:],
                    "--out",
                    str(out),
                    "--log",
                    str(tmp_path / "calm.csv"),
                ]
            )
            == 0
        )
        assert not (tmp_path / f"calm{kind}.alarms.extxyz").exists()

        write(start, ood)
        out = tmp_path / f"ood{kind}.extxyz"
        log = tmp_path / "ood.csv"
        code = main(["md", args[0], str(start), *args[1:], "--out", str(out), "--log", str(log)])
        assert code == 3  # stopped by the alarm
        frames = read(tmp_path / f"ood{kind}.alarms.extxyz", index=":")
        assert len(frames) == 1 and frames[0].info["step"] == 0
        assert frames[0].arrays["force_radius"].max() > radius
        rows = list(csv.DictReader(open(log)))
        assert len(rows) == 1
        assert float(rows[0]["max_force_radius_eV_A"]) > radius


def test_write_and_continue(model_file, tmp_path):
    radius, _ = _thresholds(model_file)
    potential = UncertainPotential(model_file)
    state = SimState.from_atoms([_in_distribution(), _out_of_distribution()])
    alarm = Alarm(max_force_radius=radius, action="write", path=tmp_path / "a.xyz", min_gap=2)
    result = run_md(
        state, potential, dt=0.25, steps=5, alarm=alarm, progress=False, thermo=tmp_path / "t.csv"
    )
    assert result.stopped_at is None and result.steps == 5
    systems = {e["system"] for e in result.alarms}
    assert systems == {1}  # only the out-of-distribution replica
    frames = read(tmp_path / "a.xyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 2, 4]  # every min_gap steps
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert {"energy_std_eV", "max_force_radius_eV_A", "max_latent_distance"} <= set(rows[0])
    by_system = {r["system"]: float(r["max_latent_distance"]) for r in rows if r["step"] == "0"}
    assert by_system["1"] > by_system["0"]
    assert torch.isfinite(result.state.positions).all()
