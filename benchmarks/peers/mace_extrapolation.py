"""Evaluate a MACE model on the extrapolation tests (run with MACE's own Python).

    /work/peers/mace/bin/python benchmarks/peers/mace_extrapolation.py MODEL DATA_DIR OUT.json

equipot is not installed in MACE's environment: its ``equipot.scan`` modules (numpy + ASE only)
are imported from the source tree without running ``equipot/__init__`` (which needs our
dependencies), so the scan is the same code for both models.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
package = types.ModuleType("equipot")
package.__path__ = [str(SRC / "equipot")]
sys.modules.setdefault("equipot", package)
sys.path.insert(0, str(HERE.parent))

from extrapolation_eval import evaluate  # noqa: E402


def main() -> int:
    import torch
    from mace.calculators import MACECalculator

    torch.set_num_threads(1)
    model, folder, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    calc = MACECalculator(model_paths=model, device="cpu", default_dtype="float64")
    out.write_text(json.dumps(evaluate(calc, folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
