"""Issue 9, item 8: an option that would do nothing in the chosen mode is an error (exit 2)
whose message says what the option applies to — across subcommands, not only ``md``."""

from __future__ import annotations

import pytest
from ase.build import bulk, molecule
from ase.io import write

from equipot.cli.main import main
from tests.conftest import small_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    small_model().save(root / "model.eqp")
    write(root / "water.xyz", molecule("H2O"))
    write(root / "cu.extxyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    return root


CASES = [  # (argv after the subcommand, with {m} model / {w} water / {c} copper, message)
    ("relax {m} {c} --pressure 1", "--pressure applies to cell relaxations (--cell)"),
    ("relax {m} {w} --hessian-refresh 5", "--hessian-refresh applies to --method newton"),
    ("phonons {m} {c} --method autograd --delta 0.02", "--delta applies to finite differences"),
    ("elastic {m} {c} --clamped-ion --fmax 0.01", "--fmax applies to the ionic relaxation"),
    ("defects {m} {c} --images 3", "--images applies to the migration barrier (--migration)"),
    ("scan {m} {w} --torsion 1 0 2 1 --points 5", "--points applies to stretch scans"),
    ("scan {m} {w} --stretch 0 1 --span 90", "--span applies to torsion scans"),
    ("scan {m} {w} --torsion 1 0 2 1 --from 0.9", "--from applies to stretch scans"),
    ("scan {m} {w} --stretch 0 1 --fmax 0.01", "--fmax applies to relaxed scans"),
    ("spectra {m} {w} --md-timestep 1", "--md-timestep applies to MD spectra"),
    ("md {m} {w} --steps 1 --timestep 1 --on-alarm write", "--on-alarm applies to uncertainty"),
    ("md {m} {w} --steps 1 --timestep 1 --alarm-gap 5", "--alarm-gap applies to uncertainty"),
    ("md {m} {w} --steps 1 --timestep 1 --efield-frequency 2", "--efield-frequency applies to"),
    ("md {m} {w} --steps 1 --timestep 1 --bulk-modulus 50", "--bulk-modulus applies to the baro"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[c[0].split()[0] + str(k) for k, c in
                                                      enumerate(CASES)])  # fmt: skip
def test_options_that_would_do_nothing_are_refused(files, tmp_path, capsys, argv, message):
    args = argv.format(m=files / "model.eqp", w=files / "water.xyz", c=files / "cu.extxyz")
    out = ["--out", str(tmp_path / "out")] if not args.startswith(("md", "relax")) else []
    assert main([*args.split(), *out]) == 2
    err = capsys.readouterr().err
    assert message in err and "would do nothing" in err, err
    assert len(err.strip().splitlines()) == 1
