"""``equipot md``: molecular dynamics (NVE, NVT, NPT, path-integral) with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from equipot.cli.options import reject_unused, with_defaults
from equipot.cli.sim_common import add_model_arguments, load_potential, read_structure


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "md",
        help="run molecular dynamics",
        description=(
            "Molecular dynamics with an equipot model. Units: fs, K, GPa, Å, eV. Writes an "
            "extended-XYZ trajectory, a thermodynamic CSV log and a PNG plot of it."
        ),
    )
    add_model_arguments(p)
    p.add_argument("structure", type=Path, help="starting structure (any format ASE reads)")
    p.add_argument("--index", default="-1", help="frame of the structure file (default last)")
    p.add_argument("--ensemble", choices=["nve", "nvt", "npt", "pimd"], default="nve")
    p.add_argument(
        "--thermostat",
        choices=["langevin", "nose-hoover"],
        default=None,
        help="NVT thermostat (default langevin; NPT and PIMD use Langevin / PILE)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="K; also draws initial Maxwell–Boltzmann velocities",
    )
    p.add_argument(
        "--pressure", type=float, default=None, help="NPT pressure, GPa (default 0; 1 bar = 1e-4)"
    )
    p.add_argument(
        "--timestep",
        default="auto",
        help="fs, or 'auto': 1/20 of the shortest vibrational period (Lanczos)",
    )
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--beads", type=int, default=1, help="PIMD: ring-polymer beads")
    p.add_argument(
        "--tau",
        type=float,
        default=None,
        help="thermostat time, fs (default 100; Langevin friction 1/tau; Nosé–Hoover period)",
    )
    p.add_argument(
        "--barostat-tau", type=float, default=None, help="NPT barostat time, fs (default 1000)"
    )
    p.add_argument(
        "--bulk-modulus",
        type=float,
        default=None,
        help="bulk modulus the NPT barostat assumes, GPa (default 100; sets its speed only)",
    )
    p.add_argument(
        "--efield",
        type=float,
        nargs=3,
        metavar=("EX", "EY", "EZ"),
        help="uniform electric field, V/Å (models with a dipole head)",
    )
    p.add_argument(
        "--efield-frequency",
        type=float,
        default=None,
        help="THz: oscillating field E·cos(2πft) (default 0: static)",
    )
    p.add_argument("--skin", type=float, default=1.0, help="neighbour-list skin, Å")
    p.add_argument(
        "--seed", type=int, default=None, help="initial velocities (--temperature), Langevin noise"
    )
    p.add_argument("--out", type=Path, default=Path("traj.extxyz"), help="trajectory file")
    p.add_argument("--log", type=Path, default=Path("thermo.csv"), help="thermo CSV")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: log with .png)")
    p.add_argument("--write-every", type=int, default=10, help="steps between frames")
    p.add_argument("--log-every", type=int, default=10, help="steps between log rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    u = p.add_argument_group(
        "uncertainty",
        "Models with uncertainty data (equipot calibrate) and committees log per-step "
        "uncertainty maxima in the thermo CSV and plot; alarms watch them every step.",
    )
    u.add_argument(
        "--max-force-radius",
        type=float,
        default=None,
        metavar="R",
        help="alarm when a system's largest conformal force radius exceeds R (eV/Å)",
    )
    u.add_argument(
        "--max-latent-distance",
        type=float,
        default=None,
        metavar="D",
        help="alarm when a system's largest latent distance exceeds D",
    )
    u.add_argument(
        "--on-alarm",
        choices=["stop", "write"],
        default=None,
        help="stop the run, or write the offending frame and continue (default stop)",
    )
    u.add_argument(
        "--alarm-file",
        type=Path,
        default=None,
        help="offending frames (extxyz; default: the trajectory's name + .alarms.extxyz)",
    )
    u.add_argument(
        "--alarm-gap", type=int, default=None, help="steps between written alarm frames (10)"
    )
    u.add_argument("--no-uncertainty", action="store_true", help="do not evaluate uncertainties")
    return p


def run(args) -> int:
    from equipot.sim.runner import run as run_md
    from equipot.sim.state import SimState, rescale_to
    from equipot.sim.timestep import max_frequency, timestep_from_frequency, wavenumber
    from equipot.sim.trajectory import plot_thermo

    if args.steps < 0:
        raise ValueError(f"--steps must be ≥ 0, got {args.steps}")
    if args.ensemble != "nve" and args.temperature is None:
        raise ValueError(f"--ensemble {args.ensemble} needs --temperature")
    if args.temperature is not None and args.temperature <= 0:
        raise ValueError(f"--temperature must be positive (K), got {args.temperature}")
    if args.beads < 1 or (args.beads > 1 and args.ensemble != "pimd"):
        raise ValueError("--beads needs --ensemble pimd and must be ≥ 1")
    check_md_options(args)
    alarm = None
    if args.max_force_radius is not None or args.max_latent_distance is not None:
        from equipot.sim.uncertain import Alarm

        if args.no_uncertainty:
            raise ValueError("--max-force-radius / --max-latent-distance need uncertainties")
        alarm = Alarm(
            max_force_radius=args.max_force_radius,
            max_latent_distance=args.max_latent_distance,
            action=args.on_alarm,
            path=args.alarm_file or args.out.with_name(args.out.stem + ".alarms.extxyz"),
            min_gap=args.alarm_gap,
        )
        if alarm.path.exists():
            alarm.path.unlink()  # a fresh run: frames of this run only
    uncertainty = False if args.no_uncertainty else (True if alarm else None)
    efield = None
    if args.efield is not None:
        from equipot.sim.field import ElectricField

        efield = ElectricField(tuple(args.efield), args.efield_frequency)
    elif args.efield_frequency:
        raise ValueError("--efield-frequency needs --efield EX EY EZ")
    potential = load_potential(
        args.model, args.dtype, args.skin, uncertainty=uncertainty, efield=efield
    )
    atoms = read_structure(args.structure, args.index)
    state = SimState.from_atoms(atoms, temperature=args.temperature, seed=args.seed)
    if args.temperature is not None and args.ensemble != "pimd":
        state = state.replace(momenta=rescale_to(state, args.temperature))
    if args.timestep == "auto":
        omega = float(max_frequency(potential, state, tol=1e-6).max())
        dt = timestep_from_frequency(omega)
        nu = wavenumber(omega)
        print(f"equipot md: highest vibrational frequency {nu:.0f} cm⁻¹ → Δt = {dt:.3f} fs")
    else:
        try:
            dt = float(args.timestep)
        except ValueError:
            msg = f"--timestep must be a number of fs or 'auto', got {args.timestep!r}"
            raise ValueError(msg) from None
        if dt <= 0:
            raise ValueError(f"--timestep must be positive, got {dt}")
    result = run_md(
        state,
        potential,
        ensemble=args.ensemble,
        dt=dt,
        steps=args.steps,
        temperature=args.temperature,
        pressure=args.pressure,
        thermostat=args.thermostat,
        tau=args.tau,
        barostat_tau=args.barostat_tau,
        bulk_modulus=args.bulk_modulus,
        beads=args.beads,
        seed=args.seed,
        trajectory=args.out,
        thermo=args.log,
        write_every=args.write_every,
        log_every=args.log_every,
        progress=not args.no_progress,
        alarm=alarm,
    )
    limits = {
        "max_force_radius_eV_A": args.max_force_radius,
        "max_latent_distance": args.max_latent_distance,
    }
    png = plot_thermo(args.log, args.plot or args.log.with_suffix(".png"), limits)
    last = result.last_rows[0]
    print(
        f"equipot md: {result.steps} steps of {dt:.3g} fs in {result.wall_s:.1f} s "
        f"({result.steps_per_s:.1f} steps/s, {result.ns_per_day:.3g} ns/day); "
        f"final T = {last['temperature_K']:.1f} K, E = {last['total_eV']:.6f} eV; "
        f"neighbour-list builds: {potential.neighbors.rebuilds}"
    )
    print(f"equipot md: wrote {args.out}, {args.log}, {png}")
    if alarm is not None and alarm.events:
        first = alarm.events[0]
        what = ", ".join(f"{k} = {v:.4g}" for k, v in first.items() if k.startswith("max_"))
        verb = "stopped" if result.stopped_at is not None else "continued"
        print(
            f"equipot md: alarm at step {first['step']} (system {first['system']}: {what}); "
            f"{len(alarm.events)} alarm(s), {verb}; offending frames in {alarm.path}"
        )
        return 3 if result.stopped_at is not None else 0
    return 0


def check_md_options(args) -> None:
    """Refuse options the chosen ensemble ignores; fill in the defaults of the others."""
    npt, nvt = args.ensemble == "npt", args.ensemble == "nvt"
    random = (
        args.temperature is not None
        or args.ensemble in ("npt", "pimd")
        or (nvt and args.thermostat != "nose-hoover")
    )
    alarms = args.max_force_radius is not None or args.max_latent_distance is not None
    alarm_scope = "uncertainty alarms (--max-force-radius / --max-latent-distance)"
    reject_unused(
        args,
        {
            "pressure": (npt, "--ensemble npt (NVE, NVT and PIMD keep the volume fixed)"),
            "barostat_tau": (npt, "the barostat of --ensemble npt"),
            "bulk_modulus": (npt, "the barostat of --ensemble npt"),
            "thermostat": (nvt, "--ensemble nvt (NPT and PIMD always use Langevin / PILE)"),
            "tau": (args.ensemble != "nve", "the thermostats of nvt, npt and pimd, not nve"),
            "seed": (random, "random numbers: velocities from --temperature, Langevin noise"),
            "on_alarm": (alarms, alarm_scope),
            "alarm_file": (alarms, alarm_scope),
            "alarm_gap": (alarms, alarm_scope),
            "efield_frequency": (args.efield is not None, "an applied field (--efield EX EY EZ)"),
        },
    )
    with_defaults(
        args,
        {
            "pressure": 0.0,
            "barostat_tau": 1000.0,
            "bulk_modulus": 100.0,
            "thermostat": "langevin",
            "tau": 100.0,
            "on_alarm": "stop",
            "alarm_gap": 10,
            "efield_frequency": 0.0,
        },
    )
