"""Data: readers (keys, units), HDF5 cache (validity, invalidation, streaming), splits,
statistics, and clear errors for bad data."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.neighborlist import neighbor_list

import equipot
from equipot.data import DataSource, GraphDataset, compute_statistics, open_cache, read_frames
from equipot.data.splits import split_indices
from equipot.data.statistics import check_dataset_elements
from equipot.data.units import energy_factor, force_factor, stress_factor
from equipot.nn.radial import PolynomialEnvelope
from tests.train_utils import emt_frames, write_emt


def test_units():
    assert energy_factor("kcal/mol") == 0.0433641
    assert force_factor("kcal/mol/Å") == 0.0433641
    assert force_factor("Hartree/Bohr") == pytest.approx(27.211386245988 / 0.529177210903)
    assert stress_factor("GPa") == pytest.approx(1 / 160.21766208)
    assert stress_factor("eV/Ang^3") == 1.0
    with pytest.raises(ValueError, match="unknown energy unit 'kcal'"):
        force_factor("kcal/Å")


def test_extxyz_keys_units_and_cache_match_direct_graphs(tmp_path):
    frames = emt_frames(5, seed=3)
    for atoms in frames:  # store under custom keys, in kcal/mol
        atoms.info["REF_e"] = atoms.get_potential_energy() / 0.0433641
        atoms.arrays["REF_f"] = atoms.get_forces() / 0.0433641
        atoms.calc = None
    path = write_emt(tmp_path / "x.xyz", 1)  # placeholder, overwritten below
    write(path, frames, format="extxyz")
    source = DataSource(path=path, energy_key="REF_e", forces_key="REF_f", energy_unit="kcal/mol")
    frames_read = list(read_frames(source))
    reference = emt_frames(5, seed=3)
    for frame, atoms in zip(frames_read, reference, strict=True):
        assert frame.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(frame.forces, atoms.get_forces(), atol=1e-9)
        assert frame.stress is None  # no stress key in this file
    dataset = GraphDataset(open_cache(source, 3.0, tmp_path / "cache"))
    batch = dataset.batch([1, 3])
    from_file = read(path, ":")
    direct = equipot.batch_graphs(
        [equipot.AtomicGraph.from_atoms(from_file[k], 3.0) for k in (1, 3)]
    )
    for name in ("positions", "atomic_numbers", "batch", "edge_index", "edge_shift", "cell"):
        assert torch.equal(getattr(batch.graph, name), getattr(direct, name)), name
    expected = [frames_read[1].energy, frames_read[3].energy]
    assert batch.energy.tolist() == pytest.approx(expected, abs=1e-12)


def test_rmd17_npz_in_kcal_per_mol(tmp_path):
    rng = np.random.default_rng(0)
    coords = rng.normal(0, 1.0, (4, 3, 3)) + np.array([[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0]])
    np.savez(
        tmp_path / "m.npz",
        nuclear_charges=np.array([8, 1, 1], np.uint8),
        coords=coords,
        energies=np.array([-1000.0, -1001.0, -999.5, -1000.2]),
        forces=np.ones((4, 3, 3)),
    )
    frames = list(read_frames(DataSource(path=tmp_path / "m.npz")))
    assert len(frames) == 4 and frames[0].numbers.tolist() == [8, 1, 1]
    assert frames[1].energy == pytest.approx(-1001.0 * 0.0433641)
    np.testing.assert_allclose(frames[2].forces, 0.0433641)
    assert not frames[0].pbc.any()


def test_ase_db(tmp_path):
    import ase.db

    frames = emt_frames(3, seed=1)
    with ase.db.connect(tmp_path / "d.db") as db:
        for atoms in frames:
            db.write(atoms)
    read = list(read_frames(DataSource(path=tmp_path / "d.db")))
    assert [f.energy for f in read] == pytest.approx([a.get_potential_energy() for a in frames])
    np.testing.assert_allclose(read[2].stress.ravel()[[0, 4, 8]], frames[2].get_stress()[:3])


def _labelled(energy=-1.0, forces=None, symbols="Cu2"):
    atoms = Atoms(symbols, positions=[[0, 0, 0], [2.2, 0, 0]])
    results = {"energy": energy}
    if forces is not None:
        results["forces"] = forces
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_labelled(forces=np.zeros((2, 3))), "frame 2: no energy \\(key 'energy'"),
        (_labelled(forces=np.full((2, 3), np.nan)), "frame 2: forces has a non-finite value"),
        (_labelled(energy=np.nan), "frame 2: energy is not finite"),
    ],
)
def test_bad_frames_name_file_frame_and_key(tmp_path, frame, message):
    good = [_labelled(forces=np.zeros((2, 3))) for _ in range(2)]
    if "no energy" in message:
        frame.calc = None
        frame.arrays["forces"] = np.zeros((2, 3))
    path = tmp_path / "bad.xyz"
    write(path, [*good, frame], format="extxyz")
    with pytest.raises(ValueError, match=f"bad.xyz {message}"):
        list(read_frames(DataSource(path=path)))


def test_wrong_force_shape_and_unknown_element(tmp_path):
    np.savez(
        tmp_path / "m.npz",
        nuclear_charges=np.array([8, 1]),
        coords=np.tile([[0.0, 0, 0], [1, 0, 0]], (2, 1, 1)),
        energies=np.zeros(2),
        forces=np.zeros((2, 3, 3)),
    )
    with pytest.raises(ValueError, match=r"m.npz: 'forces' has shape \(2, 3, 3\), expected"):
        list(read_frames(DataSource(path=tmp_path / "m.npz")))
    path = write_emt(tmp_path / "cual.xyz", 6, elements=("Cu", "Al"))
    dataset = GraphDataset(open_cache(DataSource(path=path), 3.0, tmp_path), name=str(path))
    first_al = next(k for k, a in enumerate(emt_frames(6)) if "Al" in a.get_chemical_symbols())
    with pytest.raises(ValueError, match=f"cual.xyz frame {first_al}, atom .*: element Al"):
        check_dataset_elements(dataset, ["Cu"])


def test_cache_reused_and_invalidated(tmp_path):
    path = write_emt(tmp_path / "d.xyz", 4, seed=0)
    source = DataSource(path=path)
    cache = open_cache(source, 3.0, tmp_path / "c")
    stamp = cache.stat().st_mtime_ns
    assert open_cache(source, 3.0, tmp_path / "c") == cache
    assert cache.stat().st_mtime_ns == stamp  # reused, not rebuilt
    edges_small = len(GraphDataset(cache).batch([0]).graph.edge_index[0])
    wider = open_cache(source, 4.0, tmp_path / "c")  # another cutoff: its own cache
    dataset = GraphDataset(wider)
    assert wider != cache and cache.stat().st_mtime_ns == stamp
    assert dataset.cutoff == 4.0 and len(dataset.batch([0]).graph.edge_index[0]) > edges_small
    write_emt(path, 5, seed=7)  # source changed → rebuilt
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    dataset = GraphDataset(open_cache(source, 4.0, tmp_path / "c"))
    assert len(dataset) == 5
    assert float(dataset.batch([0]).energy[0]) == pytest.approx(
        emt_frames(5, seed=7)[0].get_potential_energy()
    )


def test_streamed_dataset_equals_in_memory(tmp_path):
    cache = open_cache(DataSource(path=write_emt(tmp_path / "d.xyz", 8)), 3.0, tmp_path)
    memory = GraphDataset(cache, [1, 2, 5, 6], in_memory=True)
    disk = GraphDataset(cache, [1, 2, 5, 6], in_memory=False)
    a, b = memory.batch([3, 0, 2]), disk.batch([3, 0, 2])
    assert not disk.in_memory
    assert torch.equal(a.graph.edge_index, b.graph.edge_index)
    assert torch.equal(a.graph.positions, b.graph.positions)
    assert torch.equal(a.energy, b.energy) and torch.equal(a.stress, b.stress)
    assert a.frames.tolist() == [6, 1, 5]
    disk.close()


def test_split_is_reproducible_and_disjoint():
    train, valid = split_indices(100, valid_count=5, seed=3)
    again = split_indices(100, valid_count=5, seed=3)
    assert np.array_equal(train, again[0]) and len(valid) == 5
    assert set(train).isdisjoint(valid) and len(train) + len(valid) == 100
    assert not np.array_equal(valid, split_indices(100, valid_count=5, seed=4)[1])
    train, valid = split_indices(100, valid_fraction=0.1, train_count=20, seed=0)
    assert len(train) == 20 and len(valid) == 10
    train, valid, test = split_indices(100, valid_count=10, test_count=30, seed=0)
    assert (len(train), len(valid), len(test)) == (60, 10, 30)
    assert len(set(train) | set(valid) | set(test)) == 100


def test_statistics(tmp_path):
    frames = emt_frames(10, seed=2)
    for symbol, energy in (("Cu", -1.5), ("Al", -0.25)):  # isolated atoms fix their E0
        atom = Atoms(symbol, cell=np.eye(3) * 10.0)
        atom.calc = SinglePointCalculator(atom, energy=energy, forces=np.zeros((1, 3)))
        frames.append(atom)
    path = tmp_path / "d.xyz"
    write(path, frames, format="extxyz")
    dataset = GraphDataset(open_cache(DataSource(path=path), 3.0, tmp_path))
    stats = compute_statistics(dataset, ["Al", "Cu"], 3.0)
    assert stats.e0 == {"Al": -0.25, "Cu": -1.5}
    assert stats.e0_source == {"Al": "isolated", "Cu": "isolated"}
    counts = [len(neighbor_list("i", a, 3.0)) for a in frames]
    assert stats.avg_num_neighbors == pytest.approx(sum(counts) / sum(len(a) for a in frames))
    forces = np.concatenate([a.get_forces().ravel() for a in frames])
    assert stats.scale == pytest.approx(np.sqrt(np.mean(forces**2)))
    # no coordination-linear term any more (it extrapolates without bound); mean ρ reported
    assert stats.shift == 0.0
    envelope = PolynomialEnvelope(3.0)
    rho = (
        sum(float(envelope(torch.as_tensor(neighbor_list("d", a, 3.0))).sum()) for a in frames)
        / stats.avg_num_neighbors
    )
    assert stats.mean_coordination == pytest.approx(rho / sum(len(a) for a in frames), rel=1e-9)


def test_least_squares_e0_recovers_known_references(tmp_path):
    frames = emt_frames(12, seed=5)
    truth = {"Cu": -3.0, "Al": 1.0}
    for atoms in frames:  # energy exactly linear in the composition
        energy = sum(truth[s] for s in atoms.get_chemical_symbols())
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((4, 3)))
    path = tmp_path / "d.xyz"
    write(path, frames, format="extxyz")
    stats = compute_statistics(
        GraphDataset(open_cache(DataSource(path=path), 3.0, tmp_path)), ["Al", "Cu"], 3.0
    )
    assert stats.e0 == pytest.approx({"Al": 1.0, "Cu": -3.0})
    assert stats.shift == pytest.approx(0.0, abs=1e-9)


def test_virial_weight_and_config_type_keys(tmp_path):
    frames = emt_frames(3, seed=4)
    for k, atoms in enumerate(frames):
        stress = atoms.get_stress(voigt=False)
        atoms.info["W"] = (-stress * atoms.get_volume()).ravel()  # virial, eV
        atoms.info["w"] = 0.5 * k
        atoms.info["kind"] = f"type{k % 2}"
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
    write(tmp_path / "v.xyz", frames, format="extxyz")
    source = DataSource(
        path=tmp_path / "v.xyz", virial_key="W", weight_key="w", config_type_key="kind"
    )
    read_back = list(read_frames(source))
    for frame, atoms in zip(read_back, emt_frames(3, seed=4), strict=True):
        np.testing.assert_allclose(frame.stress, atoms.get_stress(voigt=False), atol=1e-9)
    assert [f.weight for f in read_back] == [0.0, 0.5, 1.0]
    assert [f.config_type for f in read_back] == ["type0", "type1", "type0"]
    dataset = GraphDataset(open_cache(source, 3.0, tmp_path))
    assert dataset.config_types == ["type0", "type1"]
    dataset.set_config_type_weights({"type1": 4.0})
    assert dataset.batch([0, 1, 2]).weight.tolist() == [0.0, 2.0, 1.0]
