"""Δ-models, teacher labels, the convex hull of a toy energy table, EMT mixing energies."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import equipot
from equipot.cli.main import main
from equipot.properties.hull import energy_above_hull, hull_of_entries, lower_hull
from equipot.transfer import DeltaCalculator, delta_labels, label
from tests.train_utils import emt_frames


def test_hull_of_a_toy_table_is_exact():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 0.5, 0.25])
    e = np.array([0.0, -0.30, -0.40, -0.10, 0.0, -0.20, -0.10])
    vertices = lower_hull(x, e)
    assert vertices.tolist() == [0, 1, 2, 4]  # (0.75, −0.10) lies above the 0.5–1 edge
    above = energy_above_hull(x, e, vertices)
    assert above == pytest.approx([0.0, 0.0, 0.0, 0.10, 0.0, 0.20, 0.20])
    # a point exactly on an edge is not a vertex; all-positive energies leave only the ends
    assert lower_hull([0, 0.5, 1], [0, 0, 0]).tolist() == [0, 2]
    h = hull_of_entries([0.5], [0.3])
    assert h["vertices_x"] == [0.0, 1.0] and h["above_hull"] == pytest.approx([0.3])


def _model():
    return equipot.build_model(
        ["Al", "Cu"],
        r_max=3.5,
        channels=8,
        radial_hidden=[16, 16],
        shift=-0.2,
        scale=0.5,
        e0={"Al": -0.3, "Cu": -0.1},
    )


def test_delta_calculator_is_baseline_plus_correction():
    model = _model()
    atoms = emt_frames(1, seed=3)[0]
    atoms.calc = DeltaCalculator(model, baseline="emt")
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    parts = []
    for calc in (EMT(), equipot.EquipotCalculator(model)):
        copy = atoms.copy()
        copy.calc = calc
        parts.append((copy.get_potential_energy(), copy.get_forces(), copy.get_stress()))
    assert energy == pytest.approx(parts[0][0] + parts[1][0], abs=1e-10)
    assert np.allclose(forces, parts[0][1] + parts[1][1], atol=1e-10)
    assert np.allclose(stress, parts[0][2] + parts[1][2], atol=1e-12)


def test_delta_labels_subtract_the_baseline(tmp_path):
    frames = emt_frames(3, seed=5)  # EMT labels; baseline EMT: the difference is zero
    delta = delta_labels(frames, "emt")
    for d in delta:
        assert abs(d.get_potential_energy()) < 1e-12
        assert np.abs(d.get_forces()).max() < 1e-12
    relabelled = label([f.copy() for f in frames], "lj:2.5:0.01")
    assert not np.isclose(relabelled[0].get_potential_energy(), frames[0].get_potential_energy())
    from ase.io import write

    write(tmp_path / "in.xyz", frames)
    out = tmp_path / "delta.xyz"
    assert (
        main(
            ["label", str(tmp_path / "in.xyz"), "--calculator", "emt", "--delta", "--out", str(out)]
        )
        == 0
    )
    from ase.io import read

    assert abs(read(out, 0).get_potential_energy()) < 1e-6  # positions rounded in the file


def test_emt_mixing_energies_and_hull(tmp_path):
    """EMT Cu–Au through `equipot hull --calculator emt`: ordered L1_2 / L1_0 structures
    are below the random alloy, and the hull is convex by construction."""
    out = tmp_path / "hull"
    code = main(
        [
            "hull",
            "--calculator",
            "emt",
            "--elements",
            "Cu",
            "Au",
            "--size",
            "1",
            "--samples",
            "1",
            "--x",
            "0.25",
            "0.5",
            "--fmax",
            "0.05",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    import json

    result = json.loads((out / "hull.json").read_text())
    entries = {e["label"]: e for e in result["entries"]}
    assert entries["L1_0 CuAu"]["formation_energy"] < 0.0
    pure = EMT()
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.calc = pure
    assert result["pure"]["Cu"]["energy_per_atom"] <= cu.get_potential_energy() / 4 + 1e-9
    xs, es = result["hull"]["vertices_x"], result["hull"]["vertices_e"]
    slopes = np.diff(es) / np.diff(xs)
    assert np.all(np.diff(slopes) >= -1e-12)
    assert (out / "hull.png").stat().st_size > 1000


def test_fast_xtb_calculator_matches_tblites_ase_calculator():
    from ase.build import molecule
    from tblite.ase import TBLite

    from equipot.transfer.teachers import XTBCalculator

    atoms = molecule("CH3CONH2")
    fast = XTBCalculator("GFN2-xTB")
    for step in range(2):  # the second call restarts from the first wavefunction
        atoms.positions[0] += 0.05 * step
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = fast, TBLite(method="GFN2-xTB", verbosity=0)
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
        # different SCF start guesses agree to tblite's convergence threshold: ~5e-5 eV/Å
        assert np.allclose(a.get_forces(), b.get_forces(), atol=2e-4)


def test_unknown_shipped_model_and_base_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no shipped pre-trained model named 'nope'"):
        equipot.pretrained("nope")
    from equipot.train import load_config, train
    from tests.train_utils import tiny_config, write_emt

    data = write_emt(tmp_path / "d.xyz", 4)
    config = load_config(tiny_config(data, tmp_path / "ft", finetune={"from": "missing.eqp"}))
    with pytest.raises(FileNotFoundError, match=r"missing\.eqp is neither a model file"):
        train(config, verbose=False)


def test_teacher_without_its_optional_package_is_a_clear_error(monkeypatch):
    import sys

    from equipot.transfer.teachers import teacher

    monkeypatch.setitem(sys.modules, "matscipy", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "matscipy.calculators.manybody", None)
    with pytest.raises(ValueError, match=r"'sw-si' needs the package .*equipot\[teachers\]"):
        teacher("sw-si")
