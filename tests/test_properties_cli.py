"""The property subcommands end to end (EMT and a small model), outputs and errors."""

from __future__ import annotations

import json

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.io import write

from equipot.cli.main import main
from tests.conftest import random_cluster


def _json(path):
    return json.loads(path.read_text())


def test_vibrations_cli_with_emt_and_with_a_model(tmp_path, model):
    write(tmp_path / "n2.xyz", Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]]))
    out = tmp_path / "vib"
    args = ["vibrations", "--calculator", "emt", str(tmp_path / "n2.xyz"), "--relax", "1e-5"]
    assert main([*args, "--out", str(out)]) == 0
    data = _json(out / "vibrations.json")
    assert len(data["frequencies_cm"]) == 1 and 1200 < data["frequencies_cm"][0] < 1260
    assert (out / "modes.extxyz").exists() and (out / "thermo.png").exists()

    model.save(tmp_path / "m.eqp")
    write(tmp_path / "cluster.xyz", random_cluster(5, seed=3))
    out = tmp_path / "vib-model"
    rc = main(["vibrations", str(tmp_path / "m.eqp"), str(tmp_path / "cluster.xyz"),
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert len(_json(out / "vibrations.json")["frequencies_cm"]) == 3 * 5 - 6


def test_phonons_cli_with_phonopy_export(tmp_path):
    write(tmp_path / "cu.xyz", bulk("Cu", "fcc", a=3.59))
    out = tmp_path / "ph"
    rc = main(["phonons", "--calculator", "emt", str(tmp_path / "cu.xyz"), "--supercell",
               "2", "2", "2", "--mesh", "6", "6", "6", "--npoints", "40", "--phonopy",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = _json(out / "phonons.json")
    assert not data["imaginary_modes"]
    assert np.allclose(sorted(data["special_points"]["X"]), [5.53, 5.53, 8.14], atol=0.02)
    for name in ("bands.png", "thermal.png", "FORCE_CONSTANTS", "phonopy_params.yaml"):
        assert (out / name).exists(), name


def test_elastic_surface_defects_cli(tmp_path):
    write(tmp_path / "cu.xyz", bulk("Cu", "fcc", a=3.6))
    write(tmp_path / "cubic.xyz", bulk("Cu", "fcc", a=3.59, cubic=True))
    base = ["--calculator", "emt"]
    assert main(["elastic", *base, str(tmp_path / "cu.xyz"), "--out", str(tmp_path / "el")]) == 0
    elastic = _json(tmp_path / "el" / "elastic.json")
    c = np.array(elastic["C_stress"])
    assert abs(c[0, 0] - 172.6) < 1.0 and elastic["born_stable"]
    assert elastic["fit_difference"] < 0.01

    rc = main(["surface", *base, str(tmp_path / "cu.xyz"), "--miller", "1", "1", "1",
               "--layers", "3", "4", "--vacuum", "6", "--out", str(tmp_path / "s")])  # fmt: skip
    assert rc == 0
    surface = _json(tmp_path / "s" / "surface.json")["surfaces"][0]
    assert surface["converged"] and 1.0 < surface["gamma_J_m2"] < 1.1

    rc = main(["defects", *base, str(tmp_path / "cubic.xyz"), "--supercell", "2", "2", "2",
               "--out", str(tmp_path / "d")])  # fmt: skip
    assert rc == 0
    vacancy = _json(tmp_path / "d" / "defects.json")["vacancy_formation"]
    assert 1.1 < vacancy["energy"] < 1.3


def test_cli_errors_are_clear(tmp_path, capsys):
    write(tmp_path / "cu.xyz", bulk("Cu"))
    assert main(["phonons", str(tmp_path / "cu.xyz")]) == 2
    assert "expected MODEL STRUCTURE" in capsys.readouterr().err
    assert main(["elastic", str(tmp_path / "none.eqp"), str(tmp_path / "cu.xyz")]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert main(["vibrations", "--calculator", "emt", str(tmp_path / "missing.xyz")]) == 2
    assert "no such structure file" in capsys.readouterr().err
