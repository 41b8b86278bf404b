"""Swap the ZBL switch of a trained equipot model and measure the extrapolation tests (issue 10).

    python benchmarks/extrapolation_switch.py MODEL.eqp DATA_DIR 0.85/0.93 0.8/1.0 ...

Each ``inner/outer`` is applied to per-element radii fitted to DATA_DIR/train.xyz
(:func:`equipot.model.terms.zbl.switch_radii`: R_a + R_b ≤ the shortest distance of the pair);
``cov:inner/outer`` uses the covalent radii instead. A switch that is zero on every training
frame leaves the trained network what it would have been with that switch, so this compares
switches without retraining (a switch that acts on training frames — e.g. ``cov:0.6/1.0`` —
is not a fair comparison this way: the network was not trained with it). Prints, per switch,
energy / force MAE (meV, meV/Å) per test and the spurious-minimum depth (eV) and relative MAE
(meV) of every stretch scan.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from ase.io import read

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extrapolation_eval import predict_frames, test_files
from extrapolation_shape import compare


def shortest_pairs(frames, elements: list[str]) -> dict[tuple[str, str], float]:
    order = {e: k for k, e in enumerate(elements)}
    best: dict[tuple[str, str], float] = {}
    for atoms in frames:
        d = atoms.get_all_distances()
        symbols = [chemical_symbols[z] for z in atoms.numbers]
        for i, j in itertools.combinations(range(len(atoms)), 2):
            key = tuple(sorted((symbols[i], symbols[j]), key=order.get))
            best[key] = min(best.get(key, np.inf), float(d[i, j]))
    return best


def main(argv: list[str] | None = None) -> int:
    import torch

    import equipot
    from equipot.model.config import Repulsion
    from equipot.model.energy_model import EnergyModel
    from equipot.model.io import load_model
    from equipot.model.terms.zbl import switch_radii

    model_path, folder, *switches = argv or sys.argv[1:]
    folder = Path(folder)
    torch.set_num_threads(1)
    base = load_model(model_path)
    elements = base.config.elements
    radii = switch_radii(shortest_pairs(read(folder / "train.xyz", ":"), elements), elements)
    files = test_files(folder)
    frames = {name: [f for p in paths for f in read(p, ":")] for name, paths in files.items()}
    for switch in switches:
        covalent = switch.startswith("cov:")
        inner, outer = (float(x) for x in switch.removeprefix("cov:").split("/"))
        rep = Repulsion(inner=inner, outer=outer, radii=None if covalent else radii)
        model = EnergyModel(base.config.model_copy(update={"repulsion": rep}))
        model.load_state_dict(base.state_dict())
        calc = equipot.EquipotCalculator(model)
        row = {}
        for name, group in frames.items():
            pred = predict_frames(calc, group)
            e = np.array(pred["energy"])
            ref = np.array([f.info["REF_energy"] for f in group])
            f = np.concatenate([np.ravel(x) for x in pred["forces"]])
            ref_f = np.concatenate([a.arrays["REF_forces"].ravel() for a in group])
            row[name] = [
                round(1e3 * np.abs(e - ref).mean(), 1),
                round(1e3 * np.abs(f - ref_f).mean(), 1),
            ]
            if name == "stretch":
                start = 0
                for path in files["stretch"]:
                    n = len(read(path, ":"))
                    c = compare(ref[start : start + n], e[start : start + n], periodic=False)
                    row[path.stem] = [
                        round(c["spurious_minimum_eV"], 3),
                        round(c["relative_mae_meV"]),
                    ]
                    start += n
        print(switch, json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
