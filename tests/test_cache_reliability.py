"""The HDF5 graph cache: content hash (not size / mtime), the cutoff in the key, one build when
two runs need the same cache at once, no leftovers from killed builds."""

from __future__ import annotations

import os
import threading
import time

import torch

import equipot.data.cache as cache_module
from equipot.data import DataSource, GraphDataset, open_cache
from tests.train_utils import write_emt


def test_an_edit_that_keeps_size_and_mtime_is_noticed(tmp_path):
    path = write_emt(tmp_path / "d.xyz", 4, seed=0)
    source = DataSource(path=path)
    before = GraphDataset(open_cache(source, 3.0, tmp_path / "c")).batch([0]).graph.positions
    lines = path.read_text().splitlines(keepends=True)
    x = lines[2].split()[1]  # the first atom's x coordinate
    digit = x[-1]
    edited_x = x[:-1] + str((int(digit) + 1) % 10)
    lines[2] = lines[2].replace(x, edited_x, 1)
    stat = path.stat()
    path.write_text("".join(lines))  # same length
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after = GraphDataset(open_cache(source, 3.0, tmp_path / "c")).batch([0]).graph.positions
    assert not torch.equal(before, after)
    assert float(abs(after - before).max()) < 1e-3  # just that digit


def test_each_cutoff_keeps_its_own_cache(tmp_path):
    source = DataSource(path=write_emt(tmp_path / "d.xyz", 4, seed=1))
    small = open_cache(source, 3.0, tmp_path / "c")
    stamp = small.stat().st_mtime_ns
    large = open_cache(source, 4.5, tmp_path / "c")
    assert large != small
    assert open_cache(source, 3.0, tmp_path / "c") == small
    assert small.stat().st_mtime_ns == stamp  # not rebuilt when the cutoff comes back
    assert GraphDataset(small).cutoff == 3.0 and GraphDataset(large).cutoff == 4.5


def test_two_runs_building_at_once_build_once(tmp_path, monkeypatch, capsys):
    source = DataSource(path=write_emt(tmp_path / "d.xyz", 6, seed=2))
    real = cache_module.read_frames

    def slow_frames(src):
        for frame in real(src):
            time.sleep(0.05)  # a long build, so the second run arrives during it
            yield frame

    monkeypatch.setattr(cache_module, "read_frames", slow_frames)
    start = threading.Barrier(2)
    paths, errors = [], []

    def run():
        start.wait()
        try:
            paths.append(open_cache(source, 3.0, tmp_path / "c", verbose=True))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1
    assert capsys.readouterr().out.count("preprocessing") == 1
    assert len(GraphDataset(paths[0])) == 6
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        [paths[0].name, paths[0].name + ".lock"]
    )


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    source = DataSource(path=write_emt(tmp_path / "d.xyz", 3, seed=3))
    path = cache_module.cache_path(source, tmp_path / "c", 3.0)
    path.parent.mkdir()
    stale = path.with_name(f"{path.name}.999999999.tmp")  # no such process
    stale.write_bytes(b"half an HDF5 file")
    assert open_cache(source, 3.0, tmp_path / "c") == path
    assert not stale.exists()
