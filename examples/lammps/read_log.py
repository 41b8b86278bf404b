"""Read the thermo output of LAMMPS logs: averages over the second half and a plot.

python read_log.py log.nvt.lammps log.npt.lammps   → table on stdout + thermo.png
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def thermo(path: str) -> dict[str, np.ndarray]:
    """The last thermo block of a LAMMPS log as columns."""
    blocks, header, rows = [], None, []
    for line in open(path):
        words = line.split()
        if words[:1] == ["Step"]:
            header, rows = words, []
        elif header and line.startswith("Loop time"):
            blocks.append((header, rows))
            header = None
        elif header:
            try:
                rows.append([float(w) for w in words])
            except ValueError:  # warnings between thermo lines
                continue
    if not blocks:
        raise ValueError(f"{path}: no complete thermo output (did the run finish?)")
    names, data = blocks[-1]
    array = np.array(data)
    return {name: array[:, k] for k, name in enumerate(names)}


def main(paths: list[str]) -> None:
    fig, axes = plt.subplots(3, 1, figsize=(6, 7), sharex=True)
    for path in paths:
        t = thermo(path)
        half = len(t["Step"]) // 2
        summary = ", ".join(
            f"{k} {t[k][half:].mean():.4g} ± {t[k][half:].std():.2g}"
            for k in ("Temp", "PotEng", "Press", "Volume")
            if k in t
        )
        print(f"{path}: second half: {summary}")
        for ax, key in zip(axes, ("Temp", "Press", "Volume"), strict=True):
            ax.plot(t["Time"], t[key], label=path)
            ax.set_ylabel({"Temp": "T (K)", "Press": "P (bar)", "Volume": "V (Å³)"}[key])
    axes[-1].set_xlabel("time (ps)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig("thermo.png", dpi=120)
    print("plot: thermo.png")


if __name__ == "__main__":
    main(sys.argv[1:] or ["log.nvt.lammps", "log.npt.lammps"])
