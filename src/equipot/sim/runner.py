"""Run an MD simulation with output: the loop behind ``equipot md``.

The loop itself only calls ``step``; every ``log_every`` steps it computes the thermodynamic
quantities (the only host synchronisation), writes the CSV and refreshes the progress bar
(ns/day, temperature, energy); every ``write_every`` steps it appends trajectory frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from equipot.progress import progress_bar
from equipot.sim import langevin, nose_hoover, npt, nve, pimd
from equipot.sim.potentials import Potential
from equipot.sim.state import GPA, SimState
from equipot.sim.trajectory import ThermoLog, TrajectoryWriter

ENSEMBLES = ("nve", "nvt", "npt", "pimd")
THERMOSTATS = ("langevin", "nose-hoover")


@dataclass
class MDResult:
    state: SimState
    steps: int
    dt: float  # fs
    wall_s: float
    last_rows: list[dict]

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def ns_per_day(self) -> float:
        return self.steps_per_s * self.dt * 1e-6 * 86400.0


def integrator(ensemble: str, thermostat: str = "langevin"):
    """(init, step) functions for an ensemble."""
    if ensemble == "nve":
        return nve.init, nve.step
    if ensemble == "nvt":
        if thermostat not in THERMOSTATS:
            raise ValueError(f"unknown thermostat {thermostat!r}; choose from {THERMOSTATS}")
        module = langevin if thermostat == "langevin" else nose_hoover
        return module.init, module.step
    if ensemble == "npt":
        return npt.init, npt.step
    if ensemble == "pimd":
        return pimd.init, pimd.step
    raise ValueError(f"unknown ensemble {ensemble!r}; choose from {ENSEMBLES}")


def thermo_rows(state: SimState, step: int, time_fs: float, temperature: float | None) -> list:
    """One dict per (physical) system with the quantities worth logging (PIMD: the quantum
    estimators — bead-averaged potential, centroid-virial kinetic energy — and the bead
    kinetic temperature divided by P)."""
    columns: dict = {}
    if isinstance(state, pimd.RingPolymerState):
        # quantum estimators: bead-averaged potential, centroid-virial kinetic energy
        est = pimd.estimators(state, temperature)
        columns["potential_eV"] = est["potential"]
        columns["kinetic_eV"] = est["kinetic"]
        columns["total_eV"] = est["total"]
        columns["temperature_K"] = est["temperature"]
    else:
        kinetic = state.kinetic_energy()
        columns["potential_eV"] = state.energy
        columns["kinetic_eV"] = kinetic
        columns["total_eV"] = state.energy + kinetic
        columns["temperature_K"] = state.temperature()
        if isinstance(state, nose_hoover.NoseHooverState):
            columns["conserved_eV"] = nose_hoover.conserved_energy(state, temperature)
        if isinstance(state, npt.NPTState):
            columns["volume_A3"] = state.volume()
            columns["pressure_GPa"] = npt.instantaneous_pressure(state) / GPA
    values = {k: v.detach().cpu().double().tolist() for k, v in columns.items()}
    n = len(values["potential_eV"])
    return [
        {"step": step, "time_fs": time_fs, "system": s, **{k: v[s] for k, v in values.items()}}
        for s in range(n)
    ]


def run(
    state: SimState,
    potential: Potential,
    *,
    ensemble: str = "nve",
    dt: float,
    steps: int,
    temperature: float | None = None,
    pressure: float = 0.0,
    thermostat: str = "langevin",
    tau: float = 100.0,
    barostat_tau: float = 1000.0,
    bulk_modulus: float = 100.0,
    beads: int = 1,
    seed: int | None = None,
    trajectory: str | Path | None = None,
    thermo: str | Path | None = None,
    write_every: int = 10,
    log_every: int = 10,
    progress: bool = True,
) -> MDResult:
    """Initialise the integrator of ``ensemble`` and take ``steps`` steps of ``dt`` fs
    (temperature K, pressure GPa, ``tau``/``barostat_tau`` fs, ``bulk_modulus`` GPa)."""
    init_fn, step_fn = integrator(ensemble, thermostat)
    if ensemble != "nve" and temperature is None:
        raise ValueError(f"ensemble {ensemble} needs a temperature")
    init_kw: dict = {}
    step_kw: dict = {"dt": dt}
    if ensemble in ("nvt", "npt", "pimd"):
        step_kw["temperature"] = temperature
        if not (ensemble == "nvt" and thermostat == "nose-hoover"):
            init_kw["seed"] = seed
            step_kw["tau"] = tau
    if ensemble == "nvt" and thermostat == "nose-hoover":
        init_kw.update(temperature=temperature, tau=tau)
    if ensemble == "npt":
        step_kw.update(pressure=pressure, barostat_tau=barostat_tau, bulk_modulus=bulk_modulus)
    if ensemble == "pimd":
        init_kw.update(n_beads=beads, temperature=temperature)

    state = init_fn(state, potential, **init_kw)
    writer = TrajectoryWriter(trajectory) if trajectory else None
    log = ThermoLog(thermo) if thermo else None
    frame = (lambda s: pimd.centroid(s)) if ensemble == "pimd" else (lambda s: s)
    rows = thermo_rows(state, 0, 0.0, temperature)
    if log:
        log.write(rows)
    if writer:
        writer.write(frame(state), 0, 0.0)
    bar = progress_bar(steps, "md", "step", enabled=progress)
    start = time.perf_counter()
    try:
        for i in range(1, steps + 1):
            state = step_fn(state, potential, **step_kw)
            if i % log_every == 0 or i == steps:
                rows = thermo_rows(state, i, i * dt, temperature)
                if log:
                    log.write(rows)
                elapsed = time.perf_counter() - start
                bar.set_postfix(
                    {
                        "ns/day": f"{i * dt * 1e-6 / elapsed * 86400:.3g}",
                        "T": f"{rows[0]['temperature_K']:.1f}K",
                        "E": f"{rows[0]['total_eV']:.4f}eV",
                    },
                    refresh=False,
                )
            if writer and (i % write_every == 0 or i == steps):
                writer.write(frame(state), i, i * dt)
            bar.update(1)
    finally:
        bar.close()
        if writer:
            writer.close()
        if log:
            log.close()
    wall = time.perf_counter() - start
    return MDResult(state=state, steps=steps, dt=dt, wall_s=wall, last_rows=rows)
