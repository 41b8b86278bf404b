"""Labelling with a reference calculator in parallel processes, every frame saved at once.

Each worker labels a frame and appends it to the labelled extxyz file itself (one write under
an exclusive lock, flushed and fsynced) before taking the next one, so a killed loop loses at
most the calculations in flight: on restart, frames whose ``learn_id`` is already in the file
(or in the failure log) are not computed again. A frame cut short by the kill is dropped when
the file is next read (:func:`read_labelled` truncates it to the last complete frame).
"""

from __future__ import annotations

import fcntl
import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ase import Atoms
from ase.io import read, write

from equipot.learn.reference import label, make_calculator
from equipot.progress import progress_bar

LABEL_ID = "learn_id"
_worker_state: dict = {}


def read_labelled(path: Path) -> list[Atoms]:
    """Frames of an extxyz file; an incomplete last frame is cut off the file."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    good, offset, k = 0, 0, 0
    while k < len(lines):
        try:
            n = int(lines[k].strip())
        except ValueError:
            break
        if k + n + 2 > len(lines) or not lines[k + n + 1].endswith(b"\n"):
            break
        k += n + 2
        offset += sum(len(x) for x in lines[k - n - 2 : k])
        good += 1
    if offset < len(data):
        with open(path, "r+b") as f:
            f.truncate(offset)
    if good == 0:
        return []
    return read(io.StringIO(data[:offset].decode()), index=":", format="extxyz")


def append_frame(path: Path, atoms: Atoms) -> None:
    """One extxyz frame appended in a single locked, fsynced write."""
    buffer = io.StringIO()
    write(buffer, atoms, format="extxyz")
    text = buffer.getvalue().encode()
    with open(path, "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _init_worker(name: str, options: dict) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker_state["calculator"] = make_calculator(name, options)


def _failure_log(path: Path) -> Path:
    return path.with_name(path.stem + ".failures.jsonl")


def _label_one(frame_id: str, atoms: Atoms, path: str) -> tuple[str, str | None]:
    try:
        labelled = label(atoms, _worker_state["calculator"])
    except Exception as exc:  # a reference failure (SCF, bad geometry) skips the frame
        error = f"{type(exc).__name__}: {exc}"
        with open(_failure_log(Path(path)), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(json.dumps({"id": frame_id, "error": error}) + "\n")
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
        return frame_id, error
    labelled.info[LABEL_ID] = frame_id
    append_frame(Path(path), labelled)
    return frame_id, None


def failed_ids(path: Path) -> set[str]:
    log = _failure_log(path)
    if not log.is_file():
        return set()
    return {json.loads(line)["id"] for line in log.read_text().splitlines() if line.strip()}


def label_frames(
    jobs: list[tuple[str, Atoms]],
    reference: str,
    options: dict,
    path: Path,
    *,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Label the frames of ``jobs`` not yet in ``path`` (module docstring); returns counts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {a.info.get(LABEL_ID) for a in read_labelled(path)} | failed_ids(path)
    todo = [(i, a) for i, a in jobs if i not in done]
    failures = []
    bar = progress_bar(len(todo), "labelling", enabled=progress, leave=False)
    if workers == 1 or len(todo) <= 1:
        _init_worker(reference, options)
        results = (_label_one(i, a, str(path)) for i, a in todo)
        for frame_id, error in results:
            failures += [(frame_id, error)] if error else []
            bar.update()
    else:
        # forkserver: a clean server (no OpenMP pool started, unlike this process after
        # training) that imports equipot once and forks the workers from there
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(reference, options)
        ) as pool:
            futures = [pool.submit(_label_one, i, a, str(path)) for i, a in todo]
            for future in as_completed(futures):
                frame_id, error = future.result()
                failures += [(frame_id, error)] if error else []
                bar.update()
    bar.close()
    return {"labelled": len(todo) - len(failures), "failed": len(failures), "skipped": len(done)}
