"""Error tables (text / JSON) and parity plots (PNG) for evaluation results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

ROWS = [  # key prefix, label, unit, factor from eV-based units
    ("energy", "energy", "meV", 1e3),
    ("energy_per_atom", "energy / atom", "meV/atom", 1e3),
    ("forces", "forces (component)", "meV/Å", 1e3),
    ("stress", "stress (component)", "meV/Å³", 1e3),
]


def error_table(metrics: dict, title: str = "") -> str:
    """A plain-text table of MAE / RMSE with units."""
    lines = [title] if title else []
    lines.append(f"{'quantity':<24}{'MAE':>12}{'RMSE':>12}  unit")
    for key, label, unit, factor in ROWS:
        if f"{key}_mae" in metrics:
            mae, rmse = metrics[f"{key}_mae"] * factor, metrics[f"{key}_rmse"] * factor
            lines.append(f"{label:<24}{mae:>12.4g}{rmse:>12.4g}  {unit}")
        if key == "forces":
            for element, e in metrics.get("forces_per_element", {}).items():
                lines.append(
                    f"{'  ' + element:<24}{e['mae'] * 1e3:>12.4g}{e['rmse'] * 1e3:>12.4g}  meV/Å"
                )
    lines.append(f"({metrics.get('num_frames', 0)} structures)")
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    return path


def parity_plot(path: Path, arrays: dict[str, np.ndarray], title: str = "") -> Path:
    """Predicted against reference energy per atom and force components (by element)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_forces = arrays["forces_ref"].size > 0
    fig, axes = plt.subplots(1, 2 if has_forces else 1, figsize=(10 if has_forces else 5, 4.6))
    axes = np.atleast_1d(axes)
    _panel(axes[0], arrays["energy_ref"], arrays["energy_pred"], "energy per atom (eV/atom)")
    if has_forces:
        ax = axes[1]
        for z in np.unique(arrays["forces_z"]):
            m = arrays["forces_z"] == z
            ax.scatter(
                arrays["forces_ref"][m],
                arrays["forces_pred"][m],
                s=3,
                alpha=0.5,
                label=chemical_symbols[z],
                rasterized=True,
            )
        _panel(ax, arrays["forces_ref"], arrays["forces_pred"], "force component (eV/Å)", False)
        ax.legend(markerscale=3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel(ax, ref: np.ndarray, pred: np.ndarray, label: str, scatter: bool = True) -> None:
    if scatter:
        ax.scatter(ref, pred, s=4, alpha=0.6, rasterized=True)
    if ref.size:
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = np.abs(pred - ref).mean()
        ax.text(
            0.04, 0.93, f"MAE {mae * 1e3:.3g} m{label.split('(')[1][:-1]}", transform=ax.transAxes
        )
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.grid(alpha=0.3)
