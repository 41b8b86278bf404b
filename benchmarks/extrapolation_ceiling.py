"""The extrapolation duel's equipot models with the feature ceiling (issue 10, fourth round):
each layer's aggregated messages held at the largest block norms of the training split.

    python benchmarks/extrapolation.py --budget-min 10        # trains (and evaluates) the duel
    python benchmarks/extrapolation_ceiling.py [--out DIR]    # this: no training

The ceiling is measured after training on the training split (``equipot train`` does the same
with ``model.feature_ceiling: data``, the default) and is the identity on every training frame,
so re-evaluating a trained model with it gives what training with the new default gives. For
each system under ``<out>/runs`` the model ``equipot/best.eqp`` is evaluated with the ceiling
(saved beside it as ``best_ceiling.eqp``) and compared with the same weights without it and,
where the duel ran MACE, with MACE's predictions (``runs/<system>/predictions.json``).

Writes ``<out>/ceiling/results.json`` and ``table.md``, and ``<system>_scans.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from extrapolation import NAMES, errors, markdown, plot_system  # noqa: E402
from extrapolation_eval import evaluate  # noqa: E402

NAMES.setdefault("plain", "equipot, no ceiling")


def with_ceiling(run: Path) -> Path:
    """best.eqp with its feature ceiling measured on its own training split."""
    from types import SimpleNamespace

    from ase.io import read

    import equipot
    from equipot.calculator import atoms_to_graph
    from equipot.graph import batch_graphs
    from equipot.nn.feature_ceiling import fit_feature_ceiling, set_feature_ceiling

    model = equipot.load_model(run / "best.eqp", dtype=torch.float64)
    split = json.loads((run / "data.json").read_text())["train"]
    frames = read(split["file"], ":")
    chosen = [frames[k] for k in split["frames"]]
    r_max = model.config.r_max

    class Split:
        def __len__(self) -> int:
            return len(chosen)

        def batch(self, positions, dtype):
            graphs = [atoms_to_graph(chosen[p], r_max, dtype) for p in positions]
            return SimpleNamespace(graph=batch_graphs(graphs))

    set_feature_ceiling(model, fit_feature_ceiling(model, Split()))
    path = run / "best_ceiling.eqp"
    model.save(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "out" / "extrapolation")
    p.add_argument("--systems", nargs="+", default=None)
    args = p.parse_args(argv)
    import equipot

    results = {}
    systems = args.systems or sorted(d.name for d in (args.out / "runs").iterdir() if d.is_dir())
    for system in systems:
        root = args.out / "runs" / system
        folder = args.out / "data" / system
        predictions = {}
        duel = root / "predictions.json"
        if duel.exists():
            predictions = {k: v for k, v in json.loads(duel.read_text()).items() if k == "mace"}
        ceiling = with_ceiling(root / "equipot")
        torch.set_num_threads(1)
        predictions["equipot"] = evaluate(equipot.EquipotCalculator(ceiling), folder)
        plain = equipot.EquipotCalculator(root / "equipot" / "best.eqp")
        predictions["plain"] = evaluate(plain, folder)
        results[system] = {"errors": errors(folder, predictions)}
        out = args.out / "ceiling"
        out.mkdir(parents=True, exist_ok=True)
        plot_system(out / f"{system}_scans.png", system, folder, predictions)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        (out / "table.md").write_text(markdown(results) + "\n")
        print(markdown({system: results[system]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
