"""metatomic export: the model through metatomic's own ASE calculator vs equipot's."""

from __future__ import annotations

from pathlib import Path

import metatomic_ase
import numpy as np
import pytest

import equipot
from equipot.metatomic import export_metatomic
from tests.conftest import random_cluster, random_crystal, small_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    model = small_model(seed=1)  # default: ZBL repulsion on
    directory = tmp_path_factory.mktemp("metatomic")
    model.save(directory / "model.eqp")
    return directory / "model.eqp", export_metatomic(model, directory / "model.pt")


def _compressed():
    atoms = random_crystal(6, seed=5)  # a Cu–O pair inside full ZBL, periodic
    atoms.set_cell(atoms.cell * 0.75, scale_atoms=True)
    return atoms


@pytest.fixture(scope="module")
def floored_files(tmp_path_factory):
    """A model whose radial floor (1.6 Å for every pair) holds edges of the test structures."""
    elements = ["H", "C", "O", "Cu"]
    model = small_model(seed=2, radial_floor={f"{a}-{b}": 1.6 for a in elements for b in elements})
    directory = tmp_path_factory.mktemp("metatomic-floor")
    model.save(directory / "model.eqp")
    return directory / "model.eqp", export_metatomic(model, directory / "model.pt")


@pytest.mark.parametrize("floored", [False, True], ids=["plain", "floored"])
@pytest.mark.parametrize(
    "atoms",
    [random_cluster(9, seed=5), random_crystal(6, seed=2), _compressed()],
    ids=["molecule", "triclinic", "compressed"],
)
def test_metatomic_calculator_matches_equipot(files, floored_files, atoms, floored):
    eqp, pt = floored_files if floored else files
    ours = atoms.copy()
    ours.calc = equipot.EquipotCalculator(str(eqp), dtype="float64")
    theirs = atoms.copy()
    theirs.calc = metatomic_ase.MetatomicCalculator(str(pt), neighbor_skin=0.5)
    e0 = ours.get_potential_energy()
    assert abs(theirs.get_potential_energy() - e0) <= 1e-10 * abs(e0)
    f0 = ours.get_forces()
    np.testing.assert_allclose(theirs.get_forces(), f0, rtol=0, atol=1e-10 * np.abs(f0).max())
    a0 = ours.get_potential_energies()
    np.testing.assert_allclose(
        theirs.get_potential_energies(), a0, rtol=0, atol=1e-10 * np.abs(a0).max()
    )
    if atoms.pbc.all():
        s0 = ours.get_stress()
        np.testing.assert_allclose(theirs.get_stress(), s0, rtol=0, atol=1e-10 * np.abs(s0).max())


def test_metatomic_refuses_unknown_elements(files):
    from ase import Atoms

    atoms = Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.5]])
    atoms.calc = metatomic_ase.MetatomicCalculator(str(files[1]))
    with pytest.raises(Exception, match=r"element|atomic type|79"):
        atoms.get_potential_energy()


def test_cli_export_and_a_process_without_equipot_loads_the_file(files, tmp_path):
    """The exported file and its extensions directory are all a host needs: a fresh process
    that never imports equipot (only torch, metatomic and ASE) runs the model."""
    import subprocess
    import sys

    import ase.io

    from equipot.cli.main import main
    from equipot.metatomic import extensions_directory

    eqp, _ = files
    out = tmp_path / "cli.pt"
    assert main(["metatomic", "export", str(eqp), "-o", str(out)]) == 0
    libraries = list(extensions_directory(out).rglob("*.so"))
    assert [p.name for p in libraries] == ["libequipot_metatomic.so"]
    atoms = random_crystal(6, seed=2)
    atoms.write(tmp_path / "atoms.xyz")
    script = (
        "import sys, ase.io, metatomic_ase\n"
        f"atoms = ase.io.read({str(tmp_path / 'atoms.xyz')!r})\n"
        f"atoms.calc = metatomic_ase.MetatomicCalculator({str(out)!r}, "
        f"extensions_directory={str(extensions_directory(out))!r})\n"
        "print(repr(float(atoms.get_potential_energy())))\n"
        "assert not any(name.startswith('equipot') for name in sys.modules), 'imported'\n"
        "print(*sorted({line.split()[-1] for line in open('/proc/self/maps')\n"
        "               if 'libequipot_metatomic' in line}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: equipot is not importable by accident from here
    )
    assert done.returncode == 0, done.stderr[-3000:]
    energy, loaded = done.stdout.split()[-2:]  # the library came from the extensions directory
    assert Path(loaded).resolve().is_relative_to(extensions_directory(out).resolve()), loaded
    atoms = ase.io.read(tmp_path / "atoms.xyz")  # the positions the other process read
    atoms.calc = equipot.EquipotCalculator(str(eqp), dtype="float64")
    expected = atoms.get_potential_energy()
    assert abs(float(energy) - expected) <= 1e-10 * abs(expected)
