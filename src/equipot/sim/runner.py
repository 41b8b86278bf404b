"""Run an MD simulation with output: the loop behind ``equipot md``.

The loop itself only calls ``step``; every ``log_every`` steps it computes the thermodynamic
quantities (the only host synchronisation), writes the CSV and refreshes the progress bar
(ns/day, temperature, energy); every ``write_every`` steps it appends trajectory frames;
every ``RELEASE_EVERY`` steps it hands the heap's free pages back (runtime.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from equipot.progress import progress_bar
from equipot.runtime import release_free_memory
from equipot.sim import langevin, nose_hoover, npt, nve, pimd
from equipot.sim.potentials import Potential
from equipot.sim.state import GPA, SimState
from equipot.sim.trajectory import ThermoLog, TrajectoryWriter
from equipot.sim.uncertain import Alarm, UncertainPotential

ENSEMBLES = ("nve", "nvt", "npt", "pimd")
THERMOSTATS = ("langevin", "nose-hoover")
RELEASE_EVERY = 1000  # steps between malloc_trim calls (each costs one step's page faults)


@dataclass
class MDResult:
    state: SimState
    steps: int
    dt: float  # fs
    wall_s: float
    last_rows: list[dict]
    stopped_at: int | None = None  # step at which an alarm stopped the run
    alarms: list[dict] | None = None  # every alarm raised (step, system, quantity, value)

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
    alarm: Alarm | None = None,
) -> MDResult:
    """Initialise the integrator of ``ensemble`` and take ``steps`` steps of ``dt`` fs
    (temperature K, pressure GPa, ``tau``/``barostat_tau`` fs, ``bulk_modulus`` GPa).

    With an :class:`~equipot.sim.uncertain.UncertainPotential`, the log gets the per-system
    uncertainty maxima; ``alarm`` is checked after every step (see sim/uncertain.py)."""
    init_fn, step_fn = integrator(ensemble, thermostat)
    uncertain = isinstance(potential, UncertainPotential) and ensemble != "pimd"
    if alarm is not None and not uncertain:
        raise ValueError("MD alarms need a model potential with uncertainties (not PIMD)")
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

    set_time = getattr(potential, "set_time", None)  # time-dependent fields
    if set_time is not None:
        set_time(0.0)
    state = init_fn(state, potential, **init_kw)
    writer = TrajectoryWriter(trajectory) if trajectory else None
    log = ThermoLog(thermo) if thermo else None
    frame = (lambda s: pimd.centroid(s)) if ensemble == "pimd" else (lambda s: s)

    def rows_at(state: SimState, i: int) -> list[dict]:
        rows = thermo_rows(state, i, i * dt, temperature)
        if uncertain:
            for key, values in potential.system_maxima().items():
                for row in rows:
                    row[key] = float(values[row["system"]])
        return rows

    rows = rows_at(state, 0)
    stopped_at = 0 if alarm is not None and alarm.handle(state, potential, 0, 0.0) else None
    if log:
        log.write(rows)
    if writer:
        writer.write(frame(state), 0, 0.0)
    bar = progress_bar(steps, "md", "step", enabled=progress)
    start = time.perf_counter()
    done = 0
    try:
        for i in range(1, steps + 1 if stopped_at is None else 1):
            if set_time is not None:
                set_time(i * dt)  # forces of step i are evaluated at t = i·Δt
            state = step_fn(state, potential, **step_kw)
            done = i
            stop = alarm is not None and alarm.handle(state, potential, i, i * dt)
            if stop:
                stopped_at = i
            if i % log_every == 0 or i == steps or stop:
                rows = rows_at(state, i)
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
            if writer and (i % write_every == 0 or i == steps or stop):
                writer.write(frame(state), i, i * dt)
            if i % RELEASE_EVERY == 0:
                release_free_memory()  # keeps the resident memory flat (runtime.py)
            bar.update(1)
            if stop:
                break
    finally:
        bar.close()
        if writer:
            writer.close()
        if log:
            log.close()
    wall = time.perf_counter() - start
    return MDResult(
        state=state,
        steps=done,
        dt=dt,
        wall_s=wall,
        last_rows=rows,
        stopped_at=stopped_at,
        alarms=None if alarm is None else alarm.events,
    )
