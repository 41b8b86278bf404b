"""Extended XYZ, frame by frame: the frame structure is checked here, each frame's text is then
parsed by ASE.

ASE indexes a whole file before it parses the first frame, trusts the atom-count lines (a
count of 10¹² makes it loop for hours) and keeps the last of duplicated comment-line keys.
This scanner reads one frame at a time and stops at the first problem, naming the frame and
the line: a count line that is not a positive integer, a file that ends inside a frame,
duplicated keys, an implausible ``Properties`` declaration, undecodable text or absurdly long
lines. Memory stays bounded by one frame.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

MAX_LINE = 1 << 24  # characters; longer lines are not extended XYZ
MAX_COLUMNS = 1000  # per-atom columns a Properties declaration may declare
# key=value pairs of a comment line: values quoted, in braces / brackets, or bare
_PAIR = re.compile(
    r'(?:^|\s)([A-Za-z_][\w\-.:]*)\s*=\s*("(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\S*)'
)


class ExtxyzError(ValueError):
    """A malformed extended XYZ file (the message names file, frame and line)."""


def _readline(f, path: Path, number: int, frame: int) -> str:
    where = f"{path} frame {frame} (line {number})"
    try:
        line = f.readline(MAX_LINE)
    except UnicodeDecodeError as exc:
        raise ExtxyzError(f"{where}: not UTF-8 text ({exc.reason})") from None
    if line and not line.endswith("\n"):
        if len(line) >= MAX_LINE:
            raise ExtxyzError(f"{where}: the line is longer than {MAX_LINE} characters")
        if line.strip():
            raise ExtxyzError(
                f"{where}: the file ends inside this line (no line break): it looks "
                "truncated; if it is complete, end it with a newline"
            )
    return line


def check_comment(comment: str, where: str) -> None:
    """Duplicate keys and the Properties declaration of a comment line."""
    seen: dict[str, str] = {}
    values: dict[str, str] = {}
    for match in _PAIR.finditer(comment):
        key = match.group(1)
        if key in seen:
            raise ExtxyzError(
                f"{where}: key {key!r} appears twice in the comment line ({seen[key]} and "
                f"{key}={match.group(2)[:40]}): which one is meant?"
            )
        seen[key] = f"{key}={match.group(2)[:40]}"
        values[key] = match.group(2)
    if "pbc" in values:  # ASE reads anything it cannot parse as periodic in all directions
        flags = values["pbc"].strip('"').split()
        ok = {"t", "f", "true", "false"}
        if len(flags) != 3 or any(flag.lower() not in ok for flag in flags):
            raise ExtxyzError(f"{where}: pbc={values['pbc'][:40]} must be three of T / F")
    properties = values.get("Properties", "")
    if not properties:
        return
    fields = properties.strip('"').split(":")
    if len(fields) % 3 or not fields[0]:
        raise ExtxyzError(f"{where}: Properties={properties[:80]} is not name:type:count triples")
    total = 0
    for name, kind, count in zip(fields[::3], fields[1::3], fields[2::3], strict=True):
        if kind not in ("S", "R", "I", "L") or not count.isdigit() or int(count) < 1:
            raise ExtxyzError(
                f"{where}: Properties entry {name}:{kind}:{count} needs a type S/R/I/L and a "
                "positive count"
            )
        total += int(count)
    if total > MAX_COLUMNS:
        raise ExtxyzError(f"{where}: Properties declares {total} columns per atom")


def frame_texts(path: Path) -> Iterator[tuple[int, int, str]]:
    """Yield (frame index, line number of its count line, text of the frame)."""
    with open(path, encoding="utf-8", newline=None) as f:
        number, k = 0, 0
        while True:
            line = _readline(f, path, number + 1, k)
            number += 1
            if not line:
                return
            if not line.strip():  # blank lines between or after frames
                continue
            where = f"{path} frame {k} (line {number})"
            try:
                natoms = int(line.strip())
            except ValueError:
                raise ExtxyzError(
                    f"{where}: expected the number of atoms, got {line.strip()[:60]!r}"
                ) from None
            if natoms < 1:
                raise ExtxyzError(f"{where}: the number of atoms is {natoms}")
            lines = [line]
            comment = _readline(f, path, number + 1, k)
            number += 1
            if not comment:
                raise ExtxyzError(f"{where}: the file ends before the comment line")
            check_comment(comment, where)
            lines.append(comment)
            for m in range(natoms):
                atom = _readline(f, path, number + 1, k)
                if not atom:
                    raise ExtxyzError(
                        f"{where}: the file ends after {m} of {natoms} atom lines "
                        "(truncated, or a wrong atom count)"
                    )
                number += 1
                lines.append(atom)
            first = number - natoms - 1
            while True:  # up to three "VEC1 x y z" cell lines (plain-XYZ periodic cells)
                mark = f.tell()
                extra = _readline(f, path, number + 1, k)
                if not extra.lstrip().startswith("VEC") or len(lines) > natoms + 4:
                    f.seek(mark)
                    break
                number += 1
                lines.append(extra)
            yield k, first, "".join(lines)
            k += 1


def read_extxyz_frames(path: Path) -> Iterator[tuple[str, object]]:
    """Yield ("<path> frame k", ase.Atoms) for each frame."""
    from ase.io import read

    for k, line, text in frame_texts(Path(path)):
        try:
            atoms = read(io.StringIO(text), index=0, format="extxyz")
        except Exception as exc:  # ASE's parser errors do not say where
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise ExtxyzError(f"{path} frame {k} (line {line}): cannot parse: {reason}") from None
        yield f"{path} frame {k}", atoms
