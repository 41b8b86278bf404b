"""``equipot train CONFIG --ensemble K``: a committee of K independently trained models.

Member k trains in ``<output.dir>/member-<k>`` with seed ``seed + k`` (weights, batch order)
and, with ``bootstrap``, on its own resample (with replacement) of the training split; all
members share the validation split and the data cache. Members run one after another or
``jobs`` at a time in separate processes (torch threads split between them). A member that
finished (``results.json``) is skipped, one with a checkpoint resumes, so an interrupted
committee continues where it stopped. At the end ``committee.eqp`` holds all members, with
the committee's uncertainty calibrated on the validation split when it is large enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from equipot.train.config import TrainConfig, load_config, save_config
from equipot.train.prepare import DataPart, _part


def member_config(config: TrainConfig, k: int, bootstrap: bool, threads: int | None):
    """The training config of member k (module docstring)."""
    run_dir = config.output.dir
    raw = config.model_dump(mode="json")
    raw["seed"] = config.seed + k
    raw["output"]["dir"] = str(run_dir / f"member-{k}")
    raw["data"]["cache_dir"] = str(config.data.cache_dir or run_dir / "cache")
    if bootstrap:
        raw["data"]["bootstrap_seed"] = 1000 * (config.seed + 1) + k
    if threads is not None:
        raw["num_threads"] = threads
    return load_config(raw)


def _status(run_dir: Path) -> str:
    if (run_dir / "results.json").is_file():
        return "done"
    return "resume" if (run_dir / "checkpoint.pt").is_file() else "new"


def train_committee(
    config: TrainConfig,
    members: int,
    *,
    bootstrap: bool = False,
    jobs: int = 1,
    verbose: bool = True,
) -> tuple[Path, dict]:
    """Train (or finish training) the members, then write and calibrate ``committee.eqp``."""
    from equipot.train.run import train

    if members < 2:
        raise ValueError(f"--ensemble needs at least 2 members, got {members}")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    run_dir = config.output.dir
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    cores = len(os.sched_getaffinity(0))
    threads = max(1, cores // jobs) if jobs > 1 else config.num_threads
    configs = [member_config(config, k, bootstrap, threads) for k in range(members)]
    for source in (config.data.train, config.data.valid, config.data.test):
        if source is not None:  # build the shared cache once, before members start
            _part(source, configs[0], verbose)
    todo = [(k, c) for k, c in enumerate(configs) if _status(c.output.dir) != "done"]
    if jobs == 1:
        for k, c in todo:
            if verbose:
                print(f"committee member {k + 1}/{members} ({_status(c.output.dir)})")
            train(c, resume=_status(c.output.dir) == "resume", verbose=verbose)
    else:
        _run_parallel(todo, jobs, verbose)
    return write_committee(run_dir, configs)


def _run_parallel(todo, jobs: int, verbose: bool) -> None:
    """Members as ``equipot train`` subprocesses, ``jobs`` at a time (logs in member dirs)."""
    pending, running, failed = list(todo), [], []
    while pending or running:
        while pending and len(running) < jobs:
            k, c = pending.pop(0)
            c.output.dir.mkdir(parents=True, exist_ok=True)
            path = save_config(c, c.output.dir / "member.yaml")
            command = [sys.executable, "-m", "equipot.cli.main", "train", str(path)]
            if _status(c.output.dir) == "resume":
                command.append("--resume")
            log = open(c.output.dir / "train.log", "a")
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            running.append((k, proc, log))
            if verbose:
                print(f"committee member {k}: started (log {c.output.dir / 'train.log'})")
        time.sleep(0.5)
        for k, proc, log in [r for r in running if r[1].poll() is not None]:
            running = [r for r in running if r[1] is not proc]
            log.close()
            if proc.returncode != 0:
                failed.append(k)
            elif verbose:
                print(f"committee member {k}: done")
    if failed:
        raise RuntimeError(
            f"committee members {failed} failed; see their train.log (rerun resumes)"
        )


def write_committee(run_dir: Path, configs: list[TrainConfig]) -> tuple[Path, dict]:
    """``committee.eqp`` from the members' best models, calibrated on the validation split."""
    from equipot.model.io import load_model
    from equipot.uq.committee import save_committee
    from equipot.uq.workflow import calibrate_models

    models = [load_model(c.output.dir / "best.eqp") for c in configs]
    first = configs[0]
    if first.data.valid is not None:
        valid = _part(first.data.valid, first, False).open()
    else:  # the members' shared split of the training file
        frames = json.loads((first.output.dir / "data.json").read_text())["valid"]["frames"]
        valid = DataPart(_part(first.data.train, first, False).cache, frames, "valid").open()
    uq, report = None, {"skipped": f"validation split of {len(valid)} frames: not calibrated"}
    if len(valid) >= 4:
        try:
            uq, report = calibrate_models(models, None, valid, alpha=configs[0].uncertainty.alpha)
        except ValueError as exc:
            report = {"skipped": str(exc)}
    path = save_committee(models, run_dir / "committee.eqp", uq)
    results = [json.loads((c.output.dir / "results.json").read_text()) for c in configs]
    summary = {"members": results, "calibration": report}
    (run_dir / "committee.json").write_text(json.dumps(summary, indent=1))
    return path, summary
