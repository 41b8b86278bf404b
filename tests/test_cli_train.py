"""`equipot train`, `equipot evaluate` and `equipot demo --quick` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from ase.io import read

import equipot
from equipot.cli.main import main
from tests.train_utils import tiny_config, write_emt


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = write_emt(tmp / "emt.xyz", 10, seed=2)
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data, tmp / "ignored")))
    assert (
        main(["train", str(config), "--set", "optim.max_epochs=2", "--out", str(tmp / "run")]) == 0
    )
    return tmp


def test_train_command(trained, capsys):
    run = trained / "run"
    assert (run / "best.eqp").is_file() and (run / "log.csv").is_file()
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3
    assert not (trained / "ignored").exists()  # --out wins over output.dir


def test_train_command_reports_config_errors(trained, capsys):
    code = main(["train", str(trained / "config.yaml"), "--set", "optim.learning_rat=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "optim.learning_rat: unknown key" in err and "Traceback" not in err


def test_evaluate_command_matches_the_calculator(trained, tmp_path, capsys):
    test_data = write_emt(tmp_path / "test.xyz", 4, seed=9)
    out, plot = tmp_path / "metrics.json", tmp_path / "parity.png"
    model_path = trained / "run" / "best.eqp"
    assert (
        main(["evaluate", str(model_path), str(test_data), "--out", str(out), "--plot", str(plot)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "forces (component)" in printed and "Cu" in printed
    metrics = json.loads(out.read_text())["metrics"]
    assert plot.stat().st_size > 1000
    # independent check through the ASE calculator, structure by structure
    calc = equipot.EquipotCalculator(model_path)
    e_err, f_err, s_err = [], [], []
    for atoms in read(test_data, ":"):
        ref_e, ref_f, ref_s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = calc
        e_err.append(atoms.get_potential_energy() - ref_e)
        f_err.append((atoms.get_forces() - ref_f).ravel())
        s_err.append(atoms.get_stress() - ref_s)
    assert metrics["energy_mae"] == pytest.approx(np.abs(e_err).mean(), rel=1e-6)
    assert metrics["forces_mae"] == pytest.approx(np.abs(np.concatenate(f_err)).mean(), rel=1e-6)
    assert metrics["forces_rmse"] == pytest.approx(
        np.sqrt(np.mean(np.concatenate(f_err) ** 2)), rel=1e-6
    )
    # Voigt → 9 components: diagonal once, off-diagonal twice
    s = np.array(s_err)
    voigt_mae = (np.abs(s[:, :3]).sum() + 2 * np.abs(s[:, 3:]).sum()) / (9 * len(s))
    assert metrics["stress_mae"] == pytest.approx(voigt_mae, rel=1e-6)
    assert set(metrics["forces_per_element"]) <= {"Cu", "Al"}


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "Test-set errors against EMT" in printed and "parity.png" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert np.isfinite(summary["metrics"]["forces_mae"])
    for name in ("parity_plot", "learning_curve", "model", "metrics", "properties"):
        assert (tmp_path / summary["files"][name].split(str(tmp_path) + "/")[-1]).is_file()
    assert "fcc Cu properties, model vs EMT" in printed
    rows = {r["key"]: r for r in json.loads((tmp_path / "properties.json").read_text())["rows"]}
    assert {"nu_X_TA", "nu_L_LA", "C11", "C12", "C44", "gamma_111", "E_vac"} <= set(rows)
    # the EMT column is EMT's own Cu: a0 ≈ 3.59 Å, C11 ≈ 173 GPa, E_vac ≈ 1.2 eV
    assert rows["a0"]["reference"] == pytest.approx(3.59, abs=0.01)
    assert rows["C11"]["reference"] == pytest.approx(172.6, rel=0.03)
    assert rows["E_vac"]["reference"] == pytest.approx(1.2, abs=0.15)


def test_example_config_is_the_demo_config(tmp_path):
    from pathlib import Path

    from equipot.demo.pipeline import FULL, demo_config
    from equipot.train import load_config

    example = Path(__file__).parent.parent / "examples" / "cu_emt.yaml"
    loaded = load_config(
        example, [f"data.train.path={tmp_path / 'x.xyz'}", f"output.dir={tmp_path / 'run'}"]
    )
    assert loaded == load_config(demo_config(tmp_path / "x.xyz", tmp_path / "run", FULL))


@pytest.mark.parametrize(
    "name",
    [
        "cu_emt_properties.yaml",
        "rmd17/ethanol.yaml",
        "rmd17/malonaldehyde.yaml",
        "rmd17/aspirin.yaml",
    ],
)
def test_shipped_example_configs_validate(name, tmp_path):
    from pathlib import Path

    from equipot.train import load_config

    example = Path(__file__).parent.parent / "examples" / name
    config = load_config(example, [f"output.dir={tmp_path / 'run'}"])
    assert config.model.r_max > 0 and config.optim.max_time_min is not None
