"""Bad input gets a clear ValueError naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

import equipot
from tests.conftest import random_cluster, random_crystal


@pytest.fixture
def calc(model):
    return equipot.EquipotCalculator(model)


def test_unknown_element(calc):
    atoms = random_cluster(4)
    atoms.numbers[2] = 26  # Fe
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"atom 2 is Fe, which this model does not know"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_positions(calc, bad):
    atoms = random_cluster(4)
    atoms.positions[1, 2] = bad
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"atom 1"):
        atoms.get_potential_energy()


def test_atoms_too_close(calc):
    atoms = random_cluster(4)
    atoms.positions[3] = atoms.positions[1] + [0.05, 0.0, 0.0]
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"atoms 1 and 3 .* closer than 0.1"):
        atoms.get_potential_energy()


def test_atoms_too_close_through_periodic_image(calc):
    atoms = Atoms("CuCu", positions=[[0.01, 1, 1], [3.55, 1, 1]], cell=[3.6, 3.6, 3.6], pbc=True)
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"periodic image"):
        atoms.get_potential_energy()


def test_singular_cell(calc):
    atoms = random_crystal(4)
    atoms.cell[2] = atoms.cell[0] + atoms.cell[1]
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"cell"):
        atoms.get_potential_energy()


def test_invalid_model_configuration():
    with pytest.raises(ValueError, match="unknown chemical element"):
        equipot.build_model(["H", "Xx"])
    with pytest.raises(ValueError, match="l_max"):
        equipot.build_model(["H"], l_max=5)
