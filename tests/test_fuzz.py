"""Fuzz campaign: every malformed input of a generated corpus (tests/fuzz_corpus.py) ends in a
clear one-line ``ValueError`` naming the file (and the frame / atom / key where it applies):
never a traceback, a hang or a large allocation. Most cases run through the Python API in
this process, under a data-segment limit and a per-case alarm; a representative subset runs
through the CLI in subprocesses (exit code 2, one line on stderr)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from equipot.data import DataSource, open_cache
from equipot.model.io import load_model
from equipot.train import load_config
from equipot.train.checkpoint import load_checkpoint
from tests import fuzz_corpus
from tests.conftest import small_model

MEMORY_HEADROOM = 400 * 2**20  # bytes of new data segment a case may allocate
CASE_SECONDS = 20  # per case (a loaded 2-core machine; the cases take milliseconds)
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def data_limit(headroom: int):
    """RLIMIT_DATA at current usage + ``headroom`` (anonymous mmaps count, so numpy / torch
    allocations beyond it fail with MemoryError instead of succeeding)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    with open("/proc/self/status") as f:
        used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData"))
    limit = used + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def alarm(seconds: int):
    def expired(signum, frame):
        raise CaseTimeout(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read(case: fuzz_corpus.Case, path: Path, work: Path) -> None:
    """What a user's run does with such a file."""
    if case.kind in ("extxyz", "npz", "db"):
        fmt = {"extxyz": "extxyz", "npz": "rmd17", "db": "ase-db"}[case.kind]
        source = DataSource(path=path, format=fmt, **case.options)
        open_cache(source, 4.0, work / "cache")
    elif case.kind == "yaml":
        load_config(path)
    elif case.kind == "model":
        load_model(path)
    elif case.kind == "checkpoint":
        load_checkpoint(path)
    else:  # pragma: no cover
        raise AssertionError(case.kind)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    good = root / "good.eqp"
    small_model().save(good)
    fuzz_corpus.GOOD_MODEL[:] = [good]
    marker = root / "code-ran"
    return root, marker, fuzz_corpus.all_cases(marker)


def test_corpus_is_large_and_every_case_fails_cleanly(corpus):
    root, marker, cases = corpus
    assert len(cases) >= 300, len(cases)
    assert len({c.name + c.kind for c in cases}) == len(cases)
    failures = []
    counts: dict[str, int] = {}
    paths = []
    for case in cases:
        work = root / case.kind / case.name
        work.mkdir(parents=True)
        paths.append((work, case.write(work)))
        counts[case.kind] = counts.get(case.kind, 0) + 1
    for case, (work, path) in zip(cases, paths, strict=True):
        try:
            with data_limit(MEMORY_HEADROOM), alarm(CASE_SECONDS):
                read(case, path, work)
        except ValueError as exc:
            message = str(exc)
            problems = [
                *([] if "\n" not in message.strip() else ["more than one line"]),
                *([] if path.name in message else ["file not named"]),
                *[f"{m!r} not named" for m in case.mentions if m not in message],
            ]
            if problems:
                failures.append(f"{case.kind}/{case.name}: {problems}: {message[:300]}")
        except (Exception, CaseTimeout) as exc:
            failures.append(f"{case.kind}/{case.name}: {type(exc).__name__}: {exc!s:.300}")
        else:
            failures.append(f"{case.kind}/{case.name}: accepted (no error)")
    print(f"fuzz corpus: {len(cases)} cases {counts}")
    assert not marker.exists(), "a crafted pickle ran code"
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)


CLI_CASES = {  # case name → argv builder (model file, data file, config file, case file)
    "truncated_": lambda m, c, p: ["evaluate", str(m), str(p)],  # the first truncated file
    "dtype_coords_complex": lambda m, c, p: ["evaluate", str(m), str(p)],
    "billion_laughs": lambda m, c, p: ["train", str(p)],
    "config_channels_huge": lambda m, c, p: ["md", str(p), str(c), "--steps", "1"],
}


def test_cli_subset_exits_with_code_2_and_one_line(corpus):
    root, _, cases = corpus
    by_name = {c.name: c for c in cases}
    by_name["truncated_"] = next(c for c in cases if c.name.startswith("truncated_"))
    model = fuzz_corpus.GOOD_MODEL[0]
    structure = root / "water.xyz"
    structure.write_text(
        "3\nProperties=species:S:1:pos:R:3 energy=-1.0\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "EQUIPOT_REQUIRE_KERNELS"}
    env["PYTHONPATH"] = str(ROOT / "src")
    running = []
    for name, argv in CLI_CASES.items():
        case = by_name[name]
        work = root / "cli" / name
        work.mkdir(parents=True)
        path = case.write(work)
        command = [sys.executable, "-m", "equipot", *argv(model, structure, path)]
        running.append((name, path, subprocess.Popen(
            command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )))  # fmt: skip
    problems = []
    for name, path, proc in running:
        _, err = proc.communicate(timeout=300)
        lines = [line for line in err.strip().splitlines() if line.strip()]
        if proc.returncode != 2 or len(lines) != 1 or path.name not in err or "Traceback" in err:
            problems.append(f"{name}: exit {proc.returncode}, stderr {err[-500:]!r}")
    assert not problems, "\n".join(problems)
