"""A scan as JSON (numbers + the detector's verdict) and as a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from equipot.scan.detect import ScanCheck
from equipot.scan.run import Scan


def scan_record(scan: Scan, check: ScanCheck) -> dict:
    c = scan.coordinate
    return {
        "coordinate": c.kind,
        "indices": list(c.indices),
        "moving_atoms": list(c.moving),
        "unit": c.unit,
        "relaxed": scan.relaxed,
        "values": scan.values.tolist(),
        "energy_eV": scan.energies.tolist(),
        "relative_energy_eV": scan.relative.tolist(),
        "generalized_force": scan.generalized_forces.tolist(),
        "generalized_force_unit": f"eV/{'deg' if c.kind == 'torsion' else 'Å'}",
        "converged": None if scan.converged is None else scan.converged.tolist(),
        "check": check.as_dict(),
    }


def write_json(path: Path, record: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def plot_scan(path: Path, scan: Scan, check: ScanCheck, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = scan.coordinate
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    top.plot(scan.values, scan.relative, "o-", ms=3, label="energy")
    if check.hole:
        k = int(np.argmin(scan.energies))
        top.plot(scan.values[k], scan.relative[k], "rv", ms=9, label="hole")
    top.set_ylabel("E − E(start) (eV)")
    top.legend(loc="best", fontsize=8)
    bottom.plot(scan.values, scan.generalized_forces, "o-", ms=3, color="C1")
    for k in check.sign_flips:
        bottom.plot(scan.values[k], scan.generalized_forces[k], "rx", ms=9)
    bottom.axhline(0.0, color="0.6", lw=0.8)
    bottom.set_ylabel(f"−dE/dq (eV/{'deg' if c.kind == 'torsion' else 'Å'})")
    bottom.set_xlabel(f"{c.label} ({c.unit}), {'relaxed' if scan.relaxed else 'rigid'}")
    verdict = "OK" if check.ok else "; ".join(m.split(":")[0] for m in check.messages)
    fig.suptitle(f"{title} {c.label}: {verdict}".strip(), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
