"""Kernel build reliability: cache key, stale build locks, strict mode in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import equipot.kernels as kernels_module
from equipot.kernels import build, build_flags
from equipot.kernels.build import KernelsUnavailable, build_lock, build_tag

ROOT = Path(__file__).resolve().parent.parent
SOURCES, HEADERS = kernels_module._SOURCES, kernels_module._HEADERS


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "EQUIPOT_REQUIRE_KERNELS"}
    env.update(PYTHONPATH=str(ROOT / "src"), **extra)
    return env


def test_cache_key_names_torch_compiler_flags_and_sources(monkeypatch, tmp_path):
    cflags, ldflags = build_flags()
    base = build_tag(SOURCES, HEADERS, cflags, ldflags)
    assert base == build_tag(SOURCES, HEADERS, cflags, ldflags)
    assert build_tag(SOURCES, HEADERS, [*cflags, "-ffast-math"], ldflags) != base
    assert build_tag(SOURCES, HEADERS, cflags, [*ldflags, "-lm"]) != base
    edited = tmp_path / "inference.cpp"
    edited.write_text(SOURCES[1].read_text() + "\n// edited\n")
    assert build_tag([SOURCES[0], edited], HEADERS, cflags, ldflags) != base
    moved = tmp_path / "other_install" / "inference.cpp"  # same text, another install
    moved.parent.mkdir()
    moved.write_text(SOURCES[1].read_text())
    assert build_tag([SOURCES[0], moved], HEADERS, cflags, ldflags) != base
    monkeypatch.setattr(torch, "__version__", "2.12.0+cpu")
    assert build_tag(SOURCES, HEADERS, cflags, ldflags) != base
    monkeypatch.undo()
    # another compiler ($CXX) with another version string
    fake = tmp_path / "clang++"
    fake.write_text("#!/bin/sh\necho 'clang version 99.0.0'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    assert "clang version 99.0.0" in build.compiler_identity()
    assert build_tag(SOURCES, HEADERS, cflags, ldflags) != base


def test_stale_torch_lock_is_detected_and_removed(kernels, tmp_path):
    """A build killed mid-way leaves torch's ``lock`` file; the next process recovers."""
    cflags, ldflags = build_flags()
    name = f"equipot_cpu_{build_tag(SOURCES, HEADERS, cflags, ldflags)}"
    built = build.build_root() / name
    assert built.is_dir()
    shutil.copytree(built, tmp_path / name)  # built binary: no recompilation needed
    (tmp_path / name / "lock").touch()  # what a killed build leaves behind
    code = "from equipot.kernels import cpu_kernels; assert cpu_kernels() is not None"
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(TORCH_EXTENSIONS_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,  # before the fix: waits for the lock forever
    )
    assert out.returncode == 0, out.stderr
    assert "removing the stale build lock" in out.stderr
    assert not (tmp_path / name / "lock").exists()
    assert time.perf_counter() - start < 300


def test_live_builder_makes_others_wait_then_time_out(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"  # what build_lock does, without importing torch
            f"fd = os.open({str(tmp_path / 'equipot-build.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
            "print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        (tmp_path / "lock").touch()  # torch's baton of the live build: must not be removed
        with pytest.raises(KernelsUnavailable, match=rf"held by process {holder.pid}"):
            with build_lock(tmp_path, timeout=0.5):
                pass
        assert (tmp_path / "lock").exists()
    finally:
        holder.kill()
        holder.wait()
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        with build_lock(tmp_path, timeout=5):  # the owner died: free at once, baton stale
            assert not (tmp_path / "lock").exists()


def test_require_kernels_turns_the_fallback_into_an_error(monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("no compiler")

    monkeypatch.setattr(kernels_module, "_state", {})
    monkeypatch.setattr(kernels_module, "load_extension", broken)
    monkeypatch.delenv("EQUIPOT_REQUIRE_KERNELS", raising=False)
    with pytest.warns(RuntimeWarning, match="kernels unavailable"):
        assert kernels_module.cpu_kernels() is None
    monkeypatch.setenv("EQUIPOT_REQUIRE_KERNELS", "1")
    with pytest.raises(KernelsUnavailable, match="no compiler"):
        kernels_module.cpu_kernels()
    monkeypatch.setenv("EQUIPOT_KERNELS", "0")
    with pytest.raises(KernelsUnavailable, match="EQUIPOT_KERNELS=0"):
        kernels_module.cpu_kernels()


def test_require_kernels_with_a_broken_compiler_fails_in_a_fresh_process(tmp_path):
    code = "from equipot.kernels import cpu_kernels; cpu_kernels()"
    env = _env(TORCH_EXTENSIONS_DIR=str(tmp_path), CXX="false", EQUIPOT_REQUIRE_KERNELS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode != 0
    assert "KernelsUnavailable" in out.stderr and "EQUIPOT_REQUIRE_KERNELS=1" in out.stderr


def test_ci_script_requires_kernels_and_runs_the_readme_command(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- test-command -->")
    block = readme[start:].split("```", 2)[1]  # "bash\n<command>\n"
    assert block.startswith("bash\n") and "python -m pytest" in block
    (tmp_path / "README.md").write_text(
        '<!-- test-command -->\n```bash\necho "require=$EQUIPOT_REQUIRE_KERNELS"\n```\n'
    )
    out = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "require=1" in out.stdout
