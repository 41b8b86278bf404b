"""The extrapolation duel's equipot models with the new training defaults outside the data
(issue 10, third round): radial floor at the training set's shortest distances and the
covalent ZBL window, side by side with the same run's MACE and the reference.

    python benchmarks/extrapolation.py --budget-min 10          # the duel (trains both codes)
    python benchmarks/extrapolation_floor.py                    # this: no training

Both new defaults are functions of the training set that vanish on every training frame:
the floor holds no training edge (it *is* the shortest distance of each pair) and the 0.5–0.75
covalent ZBL window is zero on every training frame (checked here, frame by frame; the script
stops if either acts on one). The trained network is therefore what a training run with the
new defaults learns — the loss, its gradients and the optimiser's path do not see them — and
the duel's trained weights are re-evaluated with the new energy function instead of
retraining (the epochs of a wall-clock budget differ from run to run; the function does not).

Writes ``<out>/floor/results.json``, ``table.md`` and ``<system>_scans.png`` (MACE's
predictions are the duel's, ``runs/<system>/predictions.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ase.io import read
from ase.neighborlist import neighbor_list

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from extrapolation import errors, markdown, plot_system  # noqa: E402
from extrapolation_eval import evaluate  # noqa: E402


def shortest_distances(frames, elements: list[str], r_max: float) -> dict[str, float]:
    """``"A-B": Å`` (both orders) within ``r_max``, periodic images included — the training
    statistics' ``shortest`` (equipot.data.statistics)."""
    best: dict[str, float] = {}
    for atoms in frames:
        i, j, d = neighbor_list("ijd", atoms, r_max)
        symbols = np.array(atoms.get_chemical_symbols())
        for a in elements:
            for b in elements:
                sel = (symbols[i] == a) & (symbols[j] == b)
                if sel.any():
                    key = f"{a}-{b}"
                    best[key] = min(best.get(key, np.inf), float(d[sel].min()))
    return best


def with_new_defaults(path: Path, train: list, out: Path):
    """The model at ``path`` with the floor and the covalent ZBL window; checks that neither
    acts on a training frame."""
    import torch

    from equipot.calculator import atoms_to_graph
    from equipot.geometry.edges import edge_vectors
    from equipot.model.config import ModelConfig, Repulsion
    from equipot.model.energy_model import EnergyModel
    from equipot.model.io import load_model
    from equipot.model.terms import TermInputs
    from equipot.nn.radial_floor import floor_from_shortest
    from equipot.train.config import ModelOptions

    base = load_model(path, dtype=torch.float64)
    c = base.config
    floor = floor_from_shortest(shortest_distances(train, c.elements, c.r_max))
    # through the validators (model_copy alone does not validate)
    config = ModelConfig.model_validate(
        {
            **c.model_dump(),
            "radial_floor": floor,
            "radial_floor_softness": ModelOptions().radial_floor_softness,  # training default
            "repulsion": Repulsion().model_dump(),
        }
    )
    model = EnergyModel(config)
    model.load_state_dict(base.state_dict())
    model = model.to(torch.float64)
    for k, atoms in enumerate(train):
        graph = atoms_to_graph(atoms, c.r_max, torch.float64)
        if model.floor_holds(graph):
            raise RuntimeError(f"the floor holds an edge of training frame {k}")
        species = model.species(graph.atomic_numbers)
        vectors = edge_vectors(
            graph.positions, graph.cell, graph.batch, graph.edge_index, graph.edge_shift
        )
        wall = float(model.terms["repulsion"](TermInputs(graph, species, vectors)).abs().sum())
        if wall != 0.0:
            raise RuntimeError(f"the covalent ZBL acts on training frame {k}: {wall} eV")
    model.save(out)
    return out, floor


def rmd17_check(model_path: Path, test: Path) -> None:
    """Test MAE of an rMD17 model trained with the floor, with and without it (energies per
    molecule in meV, forces in meV/Å; the file's kcal/mol converted to eV)."""
    import torch

    import equipot
    from equipot.model.config import ModelConfig
    from equipot.model.energy_model import EnergyModel
    from equipot.model.io import load_model

    kcal = 0.0433641
    data = np.load(test)
    base = load_model(model_path, dtype=torch.float64)
    bare = EnergyModel(
        ModelConfig.model_validate({**base.config.model_dump(), "radial_floor": None})
    )
    bare.load_state_dict(base.state_dict())
    from ase import Atoms

    frames = [Atoms(data["nuclear_charges"], positions=r) for r in data["coords"]]
    ref_e, ref_f = data["energies"] * kcal, data["forces"] * kcal
    held = sum(
        base.floor_holds(equipot.atoms_to_graph(a, base.config.r_max, torch.float64))
        for a in frames
    )
    for name, model in (("with the floor", base), ("without", bare)):
        calc = equipot.EquipotCalculator(model)
        e, f = [], []
        for atoms in frames:
            atoms = atoms.copy()
            atoms.calc = calc
            e.append(atoms.get_potential_energy())
            f.append(atoms.get_forces())
        de = np.array(e) - ref_e
        print(
            f"{name}: E MAE {1e3 * np.abs(de).mean():.3f} meV (mean offset removed: "
            f"{1e3 * np.abs(de - de.mean()).mean():.3f}), F MAE "
            f"{1e3 * np.abs(np.array(f) - ref_f).mean():.3f} meV/Å; {held} frames held"
        )


def main(argv=None) -> int:
    import equipot

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "out" / "extrapolation")
    p.add_argument("--systems", nargs="+", default=None)
    p.add_argument("--reuse", action="store_true", help="reuse saved equipot evaluations")
    p.add_argument(
        "--rmd17",
        nargs=2,
        type=Path,
        metavar=("MODEL", "TEST_NPZ"),
        help="instead: an rMD17 model's test MAE with and without its floor",
    )
    args = p.parse_args(argv)
    if args.rmd17:
        rmd17_check(*args.rmd17)
        return 0
    duel = json.loads((args.out / "results.json").read_text())
    target = args.out / "floor"
    target.mkdir(parents=True, exist_ok=True)
    results = {}
    for system in args.systems or list(duel):
        folder = args.out / "data" / system
        root = args.out / "runs" / system
        train = read(folder / "train.xyz", ":")
        model, floor = with_new_defaults(
            root / "equipot" / "best.eqp", train, root / "equipot_floor.eqp"
        )
        saved = root / "equipot_floor_eval.json"
        if args.reuse and saved.exists():
            ours = json.loads(saved.read_text())
        else:
            ours = evaluate(equipot.EquipotCalculator(model), folder)
            saved.write_text(json.dumps(ours))
        before = json.loads((root / "predictions.json").read_text())  # the duel's
        predictions = {"equipot": ours}
        if "mace" in before:
            predictions["mace"] = before["mace"]
        results[system] = {
            "budget_min": duel[system]["budget_min"],
            "training": duel[system]["training"],
            "radial_floor": floor,
            "errors": errors(folder, predictions),
            "errors_before": errors(folder, before),  # the duel's defaults, same criteria
        }
        plot_system(target / f"{system}_scans.png", system, folder, predictions)
        (target / "results.json").write_text(json.dumps(results, indent=1))
        (target / "table.md").write_text(markdown(results) + "\n")
        old = {k: {**v, "errors": v["errors_before"]} for k, v in results.items()}
        (target / "table_before.md").write_text(markdown(old) + "\n")
        print(markdown({system: results[system]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
