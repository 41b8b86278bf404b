"""Simulation output: extended-XYZ trajectories, thermodynamic CSV logs and their plots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from ase.io import write

from equipot.sim.state import SimState


class TrajectoryWriter:
    """Appends frames (one per system) to an extended-XYZ file, with energy, forces,
    stress, momenta and the step / time (fs) in each frame's info line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w")
        self.frames = 0

    def write(self, state: SimState, step: int, time_fs: float) -> None:
        for system, atoms in enumerate(state.to_atoms()):
            atoms.info.update(step=step, time_fs=time_fs, system=system)
            write(self._file, atoms, format="extxyz")
            release_calculator(atoms)
            self.frames += 1
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def release_calculator(atoms) -> None:
    """Detach ``atoms.calc`` and break its reference cycles. ASE's Calculator stores bound
    methods of itself (``get_spin_polarized``), so every single-point calculator — and the
    copy of the atoms it holds — is garbage only a full collection frees: in a long MD run
    each written frame's arrays then stay resident for minutes (the soak, issue 9)."""
    calc, atoms.calc = atoms.calc, None
    if calc is None:
        return
    for name, value in list(vars(calc).items()):
        if getattr(value, "__self__", None) is calc:
            delattr(calc, name)
    calc.atoms = None


class ThermoLog:
    """CSV with one row per logged step and system; columns fixed by the first row."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer: csv.DictWriter | None = None

    def write(self, rows: list[dict]) -> None:
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(rows[0]))
            self._writer.writeheader()
        self._writer.writerows(rows)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ThermoLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_thermo(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a thermo CSV as float arrays."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def plot_thermo(path: str | Path, png: str | Path, limits: dict | None = None) -> Path:
    """Energy, temperature (and volume / pressure, uncertainties when logged) against time
    (ps); ``limits`` (column → value) draws alarm thresholds as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_thermo(path)
    panels = [("energy", ["total_eV", "potential_eV"], "energy (eV)")]
    panels.append(("temperature", ["temperature_K"], "temperature (K)"))
    if "volume_A3" in data:
        panels.append(("volume", ["volume_A3"], "volume (Å³)"))
    if "pressure_GPa" in data:
        panels.append(("pressure", ["pressure_GPa"], "pressure (GPa)"))
    forces = [k for k in ("max_force_radius_eV_A", "max_forces_std_eV_A") if k in data]
    if forces:
        panels.append(("force uncertainty", forces, "max R / σ_F (eV/Å)"))
    if "max_latent_distance" in data:
        panels.append(("latent", ["max_latent_distance"], "max latent distance"))
    if "energy_std_eV" in data:
        panels.append(("energy std", ["energy_std_eV"], "σ_E (eV)"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True)
    axes = np.atleast_1d(axes)
    systems = np.unique(data["system"]) if data else []
    for ax, (_, keys, label) in zip(axes, panels, strict=True):
        for key in keys:
            if key not in data:
                continue
            for s in systems:
                sel = data["system"] == s
                name = key.rsplit("_", 1)[0] + (f" [{int(s)}]" if len(systems) > 1 else "")
                ax.plot(data["time_fs"][sel] / 1000.0, data[key][sel], lw=1, label=name)
        for key in keys:
            if limits and limits.get(key) is not None:
                ax.axhline(limits[key], color="red", ls="--", lw=1, label=f"alarm {limits[key]:g}")
        ax.set_ylabel(label)
        if len(ax.get_lines()) > 1:
            ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("time (ps)")
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
