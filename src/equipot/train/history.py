"""Per-epoch log: CSV file and learning-curve PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

COLUMNS = [
    "epoch",
    "time_s",
    "lr",
    "stage",
    "train_loss",
    "train_energy_mae",
    "train_forces_mae",
    "valid_loss",
    "valid_energy_mae",
    "valid_energy_per_atom_mae",
    "valid_forces_mae",
    "valid_stress_mae",
]


def write_csv(path: Path, history: list[dict]) -> Path:
    """All epochs so far (energies in eV, forces in eV/Å, stresses in eV/Å³, time in s;
    tensor labels' MAE in their units after the standard columns)."""
    tmp = path.with_name(path.name + ".tmp")
    extra = [k for k in (history[0] if history else {}) if k not in COLUMNS]
    columns = COLUMNS + extra
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in columns})
    tmp.replace(path)
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return [
            {k: float(v) if v not in ("", None) else np.nan for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def plot_learning_curve(path: Path, history: list[dict], title: str = "") -> Path:
    """Loss, energy MAE (meV) and force MAE (meV/Å) against epoch, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [
        ("loss", "loss", 1.0),
        ("energy_mae", "energy MAE (meV)", 1e3),
        ("forces_mae", "force MAE (meV/Å)", 1e3),
    ]
    for ax, (key, label, factor) in zip(axes, panels, strict=True):
        for split, style in (("train", "--"), ("valid", "-")):
            values = [row.get(f"{split}_{key}", np.nan) for row in history]
            values = np.asarray(values, dtype=float) * factor
            if np.isfinite(values).any():
                ax.plot(epochs, values, style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
