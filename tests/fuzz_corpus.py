"""A generated corpus of malformed input files for the fuzz campaign (tests/test_fuzz.py).

Each :class:`Case` writes one file and says how it is read (``kind``) and what the error must
name besides the file (a frame, an atom, a key, ...). Every case is malformed: reading it
must fail with a one-line ``ValueError`` — never succeed, crash, hang or allocate much.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml


@dataclass
class Case:
    name: str
    kind: str  # extxyz | npz | db | yaml | model | checkpoint
    write: Callable[[Path], Path]  # writes the file into a directory, returns its path
    mentions: tuple[str, ...] = ()  # besides the file name, the message must contain these
    options: dict = field(default_factory=dict)  # DataSource options (data kinds)


# ----------------------------------------------------------------------------- extxyz
BASE_FRAMES = [
    # (symbols, positions, energy, forces, stress (Voigt), lattice)
    (
        ["Cu", "Cu", "Al", "Cu"],
        [[0.0, 0.0, 0.0], [1.8, 1.8, 0.1], [1.8, 0.0, 1.8], [0.0, 1.8, 1.8]],
        -12.5,
        [[0.1, -0.2, 0.05], [0.0, 0.1, -0.1], [-0.1, 0.05, 0.0], [0.0, 0.05, 0.05]],
        [0.01, 0.0, 0.001, 0.0, 0.02, 0.0, 0.001, 0.0, 0.01],
        [3.6, 0, 0, 0, 3.6, 0, 0, 0, 3.6],
    ),
    (
        ["Cu", "Al", "Al", "Cu"],
        [[0.1, 0.0, 0.0], [1.8, 1.9, 0.0], [1.7, 0.0, 1.8], [0.0, 1.8, 1.9]],
        -11.75,
        [[0.2, 0.0, 0.0], [0.0, -0.1, 0.1], [-0.1, 0.1, 0.0], [-0.1, 0.0, -0.1]],
        [0.02, 0.002, 0.0, 0.002, 0.0, 0.0, 0.0, 0.0, 0.01],
        [3.62, 0, 0, 0, 3.58, 0, 0, 0, 3.6],
    ),
    (
        ["Al", "Cu", "Cu", "Cu"],
        [[0.0, 0.1, 0.0], [1.8, 1.8, 0.0], [1.8, 0.1, 1.8], [0.1, 1.8, 1.8]],
        -12.0,
        [[0.0, 0.0, 0.1], [0.1, 0.0, 0.0], [0.0, -0.1, 0.0], [-0.1, 0.1, -0.1]],
        [0.0, 0.0, 0.0, 0.0, 0.01, 0.001, 0.0, 0.001, 0.02],
        [3.6, 0, 0, 0.1, 3.6, 0, 0, 0, 3.6],
    ),
]
PROPERTIES = "species:S:1:pos:R:3:forces:R:3"


def frame_lines(k: int) -> list[str]:
    symbols, pos, energy, forces, stress, lattice = BASE_FRAMES[k]
    comment = (
        f'Lattice="{" ".join(map(str, lattice))}" Properties={PROPERTIES} energy={energy} '
        f'stress="{" ".join(map(str, stress))}" pbc="T T T"'
    )
    atoms = [
        f"{s} {' '.join(f'{x:.6f}' for x in p)} {' '.join(f'{f:.6f}' for f in fc)}"
        for s, p, fc in zip(symbols, pos, forces, strict=True)
    ]
    return [str(len(symbols)), comment, *atoms]


def base_text() -> str:
    return "".join(line + "\n" for k in range(3) for line in frame_lines(k))


def _text_case(name: str, text: str | bytes, *mentions: str, **options) -> Case:
    def write(d: Path) -> Path:
        path = d / f"{name}.xyz"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    return Case(name, "extxyz", write, mentions, options)


def _edit_frame(k: int, edit: Callable[[list[str]], list[str]]) -> str:
    frames = [frame_lines(m) for m in range(3)]
    frames[k] = edit(list(frames[k]))
    return "".join(line + "\n" for frame in frames for line in frame)


def _set_comment(k: int, old: str, new: str) -> str:
    return _edit_frame(k, lambda f: [f[0], f[1].replace(old, new), *f[2:]])


def _set_token(k: int, atom: int, column: int, value: str) -> str:
    def edit(f):
        tokens = f[2 + atom].split()
        tokens[column] = value
        f[2 + atom] = " ".join(tokens)
        return f

    return _edit_frame(k, edit)


def extxyz_cases() -> list[Case]:
    cases = []
    text = base_text()
    # truncations inside frames (a cut exactly at a frame boundary is a valid shorter file)
    boundaries = set()
    offset = 0
    for k in range(3):
        offset += sum(len(line) + 1 for line in frame_lines(k))
        boundaries.add(offset)
    cuts = [c for c in np.linspace(3, len(text) - 2, 48).astype(int) if c not in boundaries]
    for c in cuts:
        frame = sum(c >= b for b in sorted(boundaries))
        cases.append(_text_case(f"truncated_{c}", text[:c], f"frame {frame}"))
    # atom counts
    for k in range(3):
        for count in ("5", "3", "0", "-4", "1000000000000", "4.5", "four", "", "0x4"):
            cases.append(
                _text_case(
                    f"count_{k}_{count or 'blank'}",
                    _edit_frame(k, lambda f, c=count: [c, *f[1:]]),
                    "frame",
                )
            )
    # garbled numbers in positions / forces
    for value in ("1.2.3", "abc", "1e", "--1", "1,5", "0x10", "NaN", "inf", "-inf", "1e400"):
        for column in (2, 5):  # a coordinate, a force component
            cases.append(
                _text_case(f"garbled_{column}_{value}", _set_token(1, 2, column, value), "frame 1")
            )
    for value in ("1e308", "-1e308", "1e300"):
        cases.append(_text_case(f"huge_position_{value}", _set_token(2, 1, 1, value), "frame 2"))
        cases.append(_text_case(f"huge_force_{value}", _set_token(2, 1, 4, value), "frame 2"))
    # energies and stresses
    for value in ("nan", "inf", "-inf", "1e308", "1e400", "abc", '"1 2"', "[1,2]", "T"):
        text_ = _set_comment(0, "energy=-12.5", f"energy={value}")
        cases.append(_text_case(f"energy_{value}", text_, "frame 0", "energy"))
    for value in ('"nan 0 0 0 0 0 0 0 0"', '"1e308 0 0 0 0 0 0 0 0"', '"1 2 3 4 5"',
                  '"a b c d e f g h i"'):  # fmt: skip
        stress = 'stress="0.01 0.0 0.001 0.0 0.02 0.0 0.001 0.0 0.01"'
        text_ = _set_comment(0, stress, f"stress={value}")
        cases.append(_text_case(f"stress_{value[1:8]}", text_, "frame 0", "stress"))
    # Lattice
    lattice = 'Lattice="3.6 0 0 0 3.6 0 0 0 3.6"'
    for name, new in {
        "missing": "",
        "eight_numbers": 'Lattice="3.6 0 0 0 3.6 0 0 0"',
        "letters": 'Lattice="a b c d e f g h i"',
        "zeros": 'Lattice="0 0 0 0 0 0 0 0 0"',
        "degenerate": 'Lattice="3.6 0 0 3.6 0 0 0 0 3.6"',
        "nan": 'Lattice="nan 0 0 0 3.6 0 0 0 3.6"',
        "huge": 'Lattice="1e308 0 0 0 1e308 0 0 0 1e308"',
        "tiny": 'Lattice="0.01 0 0 0 0.01 0 0 0 0.01"',
        "unquoted": "Lattice=3.6",
    }.items():
        cases.append(_text_case(f"lattice_{name}", _set_comment(0, lattice, new), "frame 0"))
    pbcs = {"two": 'pbc="T T"', "letters": 'pbc="X Y Z"', "four": 'pbc="T T T T"'}
    for name, new in pbcs.items():
        cases.append(_text_case(f"pbc_{name}", _set_comment(1, 'pbc="T T T"', new), "frame 1"))
    # duplicate keys
    for name, extra in {
        "energy": "energy=-3.0",
        "lattice": 'Lattice="3.6 0 0 0 3.6 0 0 0 3.6"',
        "properties": f"Properties={PROPERTIES}",
        "pbc": 'pbc="F F F"',
        "stress": 'stress="0 0 0 0 0 0"',
    }.items():
        text_ = _set_comment(2, "energy=-12.0", f"energy=-12.0 {extra}")
        cases.append(_text_case(f"duplicate_{name}", text_, "frame 2", "twice"))
    # Properties declarations
    for name, props in {
        "pos2": "species:S:1:pos:R:2:forces:R:3",
        "forces2": "species:S:1:pos:R:3:forces:R:2",
        "type": "species:S:1:pos:X:3:forces:R:3",
        "count0": "species:S:1:pos:R:0:forces:R:3",
        "huge": "species:S:1:pos:R:1000000000",
        "pairs": "species:S:1:pos:R",
        "nopos": "species:S:1:forces:R:3",
        "empty": "",
    }.items():
        text_ = _set_comment(1, f"Properties={PROPERTIES}", f"Properties={props}")
        cases.append(_text_case(f"properties_{name}", text_, "frame 1"))
    # unicode and bytes
    cases += [
        _text_case("element_umlaut", _set_token(0, 1, 0, "Cü"), "frame 0"),
        _text_case("element_zero_width", _set_token(0, 1, 0, "Cu\u200b"), "frame 0"),
        _text_case("element_unknown", _set_token(0, 1, 0, "Xx"), "frame 0"),
        _text_case("element_number", _set_token(0, 1, 0, "200"), "frame 0"),
        _text_case("bom", "\ufeff" + text, "frame 0"),
        _text_case("latin1", text.replace("pbc", "pbc_Å", 1).encode("latin-1"), "line"),
        _text_case("invalid_utf8", text.encode()[:200] + b"\xff\xfe" + text.encode()[200:], "line"),
        _text_case("null_bytes", text.replace("Cu", "C\x00u", 1), "frame 0"),
        _text_case("binary", bytes(range(256)) * 8, "line"),
        _text_case("png", b"\x89PNG\r\n\x1a\n" + bytes(500), "frame 0"),
        _text_case("empty", "", "no structures"),
        _text_case("whitespace", "\n \n\t\n", "no structures"),
        _text_case("no_newline_at_end", text.rstrip("\n"), "truncated"),
        _text_case("long_line", "4\n" + "x" * (1 << 24) + "\n", "line 2"),
        _text_case("overlapping_atoms", _overlapping(), "frame 0", "atoms"),
        _text_case(
            "config_weight_negative",
            _set_comment(0, "energy=-12.5", "energy=-12.5 config_weight=-1"),
            "frame 0",
            "weight",
        ),
        _text_case(
            "config_weight_text",
            _set_comment(0, "energy=-12.5", "energy=-12.5 config_weight=heavy"),
            "frame 0",
            "weight",
        ),
        _text_case("energy_missing", _set_comment(0, "energy=-12.5", ""), "frame 0", "energy"),
        _text_case(
            "stress_on_molecule",
            _set_comment(0, 'pbc="T T T"', 'pbc="F F F"').replace(
                'Lattice="3.6 0 0 0 3.6 0 0 0 3.6" ', "", 1
            ),
            "frame 0",
            "stress",
        ),
    ]
    # keys the reader is told to use, with the wrong shape
    cases.append(
        _text_case(
            "custom_forces_wrong_shape",
            text.replace(PROPERTIES, "species:S:1:pos:R:3:forces:R:3:REF_f:R:2").replace(
                "\n", "\n", 1
            ),
            "frame 0",
            "REF_f",
            forces_key="REF_f",
        )
    )
    return [c for c in cases if not c.name.startswith("custom") or _add_ref_columns(c)]


def _overlapping() -> str:
    """Atom 1 of frame 0 moved onto atom 0."""

    def edit(f):
        tokens = f[3].split()
        tokens[1:4] = ["0.005", "0.0", "0.0"]
        f[3] = " ".join(tokens)
        return f

    return _edit_frame(0, edit)


def _add_ref_columns(case: Case) -> bool:
    """Give the REF_f case its two extra columns on every atom line."""
    old_write = case.write

    def write(d: Path) -> Path:
        path = old_write(d)
        lines = path.read_text().splitlines()
        out = []
        for line in lines:
            parts = line.split()
            out.append(line + " 0.5 0.5" if len(parts) == 7 else line)
        path.write_text("\n".join(out) + "\n")
        return path

    case.write = write
    return True


# ----------------------------------------------------------------------------- npz
def _npz_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    base = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.2, 0.0], [0.0, 0.0, 1.3]])
    return {
        "nuclear_charges": np.array([6, 1, 1, 8]),
        "coords": base + rng.normal(0, 0.02, (3, 4, 3)),
        "energies": np.array([-100.0, -100.5, -99.8]),
        "forces": rng.normal(0, 1.0, (3, 4, 3)),
    }


def _npz_case(name: str, change: Callable[[dict], dict], *mentions: str) -> Case:
    def write(d: Path) -> Path:
        path = d / f"{name}.npz"
        arrays = change(_npz_arrays())
        np.savez(path, **arrays)
        return path

    return Case(name, "npz", write, mentions)


def _raw_npz_case(name: str, build: Callable[[Path], None], *mentions: str) -> Case:
    def write(d: Path) -> Path:
        path = d / f"{name}.npz"
        build(path)
        return path

    return Case(name, "npz", write, mentions)


def _npy_header_bytes(shape, descr="<f8") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _crafted_npz(path: Path, key: str, shape, data: bytes, descr="<f8") -> None:
    arrays = _npz_arrays()
    with zipfile.ZipFile(path, "w") as z:
        for name, value in arrays.items():
            if name == key:
                z.writestr(f"{name}.npy", _npy_header_bytes(shape, descr) + data)
            else:
                with z.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, value)


def npz_cases() -> list[Case]:
    cases = []
    for key in ("nuclear_charges", "coords", "energies"):
        cases.append(
            _npz_case(
                f"missing_{key}",
                lambda a, k=key: {**a, k: None} and {n: v for n, v in a.items() if n != k},
                key,
            )
        )
    shapes = {
        "coords_2d": ("coords", lambda a: a["coords"][:, :, 0]),
        "coords_xy": ("coords", lambda a: a["coords"][:, :, :2]),
        "coords_single": ("coords", lambda a: a["coords"][0]),
        "coords_atoms": ("coords", lambda a: a["coords"][:, :3]),
        "energies_2col": ("energies", lambda a: np.stack([a["energies"]] * 2, 1)),
        "energies_long": ("energies", lambda a: np.append(a["energies"], 1.0)),
        "energies_scalar": ("energies", lambda a: np.array(1.0)),
        "forces_atoms": ("forces", lambda a: a["forces"][:, :3]),
        "forces_frames": ("forces", lambda a: a["forces"][:2]),
        "forces_flat": ("forces", lambda a: a["forces"].reshape(3, -1)),
        "charges_2d": ("nuclear_charges", lambda a: a["nuclear_charges"][None]),
        "charges_short": ("nuclear_charges", lambda a: a["nuclear_charges"][:3]),
    }
    for name, (key, fn) in shapes.items():
        cases.append(_npz_case(f"shape_{name}", lambda a, k=key, f=fn: {**a, k: f(a)}, key))
    dtypes = {
        "coords_text": ("coords", lambda a: a["coords"].astype(str)),
        "coords_complex": ("coords", lambda a: a["coords"] + 1j),
        "coords_bool": ("coords", lambda a: a["coords"] > 0),
        "energies_text": ("energies", lambda a: np.array(["a", "b", "c"])),
        "energies_complex": ("energies", lambda a: a["energies"] + 0.5j),
        "forces_complex": ("forces", lambda a: a["forces"] * 1j),
        "charges_float": ("nuclear_charges", lambda a: a["nuclear_charges"] + 0.5),
        "charges_text": ("nuclear_charges", lambda a: np.array(["C", "H", "H", "O"])),
        "charges_bytes": ("nuclear_charges", lambda a: np.array([b"C", b"H", b"H", b"O"])),
    }
    for name, (key, fn) in dtypes.items():
        cases.append(_npz_case(f"dtype_{name}", lambda a, k=key, f=fn: {**a, k: f(a)}, key))
    values = {
        "charges_zero": ("nuclear_charges", lambda a: np.array([6, 0, 1, 8]), "atom 1"),
        "charges_negative": ("nuclear_charges", lambda a: np.array([6, -1, 1, 8]), "atom 1"),
        "charges_200": ("nuclear_charges", lambda a: np.array([6, 1, 200, 8]), "atom 2"),
        "coords_nan": ("coords", lambda a: _put(a["coords"], (1, 2, 0), np.nan), "frame 1"),
        "coords_inf": ("coords", lambda a: _put(a["coords"], (2, 0, 1), np.inf), "frame 2"),
        "coords_huge": ("coords", lambda a: _put(a["coords"], (0, 3, 2), 1e308), "frame 0"),
        "energies_nan": ("energies", lambda a: _put(a["energies"], (1,), np.nan), "frame 1"),
        "energies_huge": ("energies", lambda a: _put(a["energies"], (2,), 1e308), "frame 2"),
        "forces_nan": ("forces", lambda a: _put(a["forces"], (0, 1, 1), np.nan), "frame 0"),
        "forces_inf": ("forces", lambda a: _put(a["forces"], (2, 3, 0), -np.inf), "frame 2"),
        "overlap": ("coords", lambda a: _put(a["coords"], (1, 1), a["coords"][1, 0]), "frame 1"),
    }
    for name, (key, fn, where) in values.items():
        cases.append(_npz_case(f"value_{name}", lambda a, k=key, f=fn: {**a, k: f(a)}, where))
    cases.append(
        _npz_case(
            "empty_frames",
            lambda a: {k: v[:0] if k != "nuclear_charges" else v for k, v in a.items()},
            "no",
        )
    )

    def objects(path):
        with zipfile.ZipFile(path, "w") as z:
            for name, value in _npz_arrays().items():
                data = np.empty(len(value), dtype=object) if name == "energies" else value
                if name == "energies":
                    data[:] = list(value)
                with z.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, data, allow_pickle=True)

    cases.append(_raw_npz_case("object_array", objects, "energies"))
    for shape in ((10**12, 4, 3), (3, 4, 10**9), (2**40,)):
        cases.append(
            _raw_npz_case(
                f"huge_header_{len(shape)}_{shape[-1]}",
                lambda p, s=shape: _crafted_npz(p, "coords", s, bytes(96)),
                "coords",
            )
        )
    cases.append(
        _raw_npz_case(
            "header_garbage",
            lambda p: _zip_member(p, b"\x93NUMPY\x01\x00" + b"\xff" * 60),
            "coords",
        )
    )
    cases.append(
        _raw_npz_case("header_not_npy", lambda p: _zip_member(p, b"hello world" * 9), "coords")
    )
    cases.append(
        _raw_npz_case(
            "descr_unknown",
            lambda p: _crafted_npz(p, "coords", (3, 4, 3), bytes(288), "<q9"),
            "coords",
        )
    )
    cases.append(
        _raw_npz_case(
            "data_short", lambda p: _crafted_npz(p, "coords", (3, 4, 3), bytes(100)), "coords"
        )
    )
    good = _npz_bytes()
    for cut in (10, 100, len(good) // 3, len(good) // 2, len(good) - 30, len(good) - 5):
        cases.append(_raw_npz_case(f"truncated_{cut}", lambda p, c=cut: p.write_bytes(good[:c])))
    cases.append(_raw_npz_case("random_bytes", lambda p: p.write_bytes(bytes(range(256)) * 4)))
    cases.append(_raw_npz_case("text_file", lambda p: p.write_text("energies coords\n1 2 3\n")))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    cases.append(_raw_npz_case("bit_flip_in_data", lambda p: p.write_bytes(bytes(flipped))))
    return cases


def _put(array: np.ndarray, index, value) -> np.ndarray:
    array = array.copy()
    array[index] = value
    return array


def _zip_member(path: Path, coords: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, value in _npz_arrays().items():
            if name == "coords":
                z.writestr("coords.npy", coords)
            else:
                with z.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, value)


def _npz_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **_npz_arrays())
    return buffer.getvalue()


# ----------------------------------------------------------------------------- ASE db
def _db_case(name: str, build: Callable[[Path], None], *mentions: str, **options) -> Case:
    def write(d: Path) -> Path:
        path = d / f"{name}.db"
        build(path)
        return path

    return Case(name, "db", write, mentions, options)


def _atoms(k: int):
    from ase import Atoms

    symbols, pos, energy, forces, stress, lattice = BASE_FRAMES[k]
    atoms = Atoms(symbols, positions=pos, cell=np.reshape(lattice, (3, 3)), pbc=True)
    return atoms, energy, np.array(forces), np.array(stress)


def _db_rows(path: Path, edit: Callable | None = None) -> None:
    import ase.db
    from ase.calculators.singlepoint import SinglePointCalculator

    with ase.db.connect(str(path), append=False) as db:
        for k in range(3):
            atoms, energy, forces, stress = _atoms(k)
            kv, data = {}, {}
            results = {"energy": energy, "forces": forces, "stress": stress}
            if edit is not None:
                atoms, results, kv, data = edit(k, atoms, results, kv, data)
            if results is not None:
                atoms.calc = SinglePointCalculator(atoms, **results)
            db.write(atoms, key_value_pairs=kv, data=data)


def db_cases() -> list[Case]:
    def only(k0, fn):
        return lambda k, a, r, kv, d: fn(a, r, kv, d) if k == k0 else (a, r, kv, d)

    cases = [
        _db_case("random_bytes", lambda p: p.write_bytes(bytes(range(256)) * 16)),
        _db_case("text", lambda p: p.write_text("not a database\n" * 50)),
        _db_case("empty_file", lambda p: p.write_bytes(b"")),
        _db_case(
            "no_rows",
            lambda p: _db_rows(p, lambda k, a, r, kv, d: (a, r, kv, d)) or _empty_db(p),
            "no structures",
        ),
        _db_case("sqlite_other_schema", _other_sqlite),
        _db_case(
            "no_energy",
            lambda p: _db_rows(p, only(1, lambda a, r, kv, d: (a, None, kv, d))),
            "frame 1",
            "energy",
        ),
        _db_case(
            "nan_energy",
            lambda p: _db_rows(
                p, only(0, lambda a, r, kv, d: (a, {**r, "energy": float("nan")}, kv, d))
            ),
            "frame 0",
            "energy",
        ),
        _db_case(
            "inf_forces",
            lambda p: _db_rows(
                p, only(2, lambda a, r, kv, d: (a, {**r, "forces": r["forces"] * np.inf}, kv, d))
            ),
            "frame 2",
            "forces",
        ),
        _db_case(
            "weight_negative",
            lambda p: _db_rows(p, only(1, lambda a, r, kv, d: (a, r, {"config_weight": -2.0}, d))),
            "frame 1",
            "weight",
        ),
        _db_case(
            "weight_text",
            lambda p: _db_rows(
                p, only(1, lambda a, r, kv, d: (a, r, {"config_weight": "heavy"}, d))
            ),
            "frame 1",
            "weight",
        ),
        _db_case(
            "custom_forces_shape",
            lambda p: _db_rows(
                p, only(0, lambda a, r, kv, d: (a, r, kv, {"REF_f": np.zeros((3, 3))}))
            ),
            "frame 0",
            "REF_f",
            forces_key="REF_f",
        ),
        _db_case(
            "custom_energy_text",
            lambda p: _db_rows(p, lambda k, a, r, kv, d: (a, r, {"REF_e": "low"}, d)),
            "frame 0",
            "energy",
            energy_key="REF_e",
        ),
        _db_case(
            "custom_stress_shape",
            lambda p: _db_rows(
                p,
                only(
                    2,
                    lambda a, r, kv, d: (
                        a,
                        {k: v for k, v in r.items() if k != "stress"},
                        kv,
                        {"REF_s": np.zeros(5)},
                    ),
                ),
            ),
            "frame 2",
            "stress",
            stress_key="REF_s",
        ),
        _db_case(
            "huge_positions",
            lambda p: _db_rows(p, only(1, lambda a, r, kv, d: (_moved(a, 1e300), r, kv, d))),
            "frame 1",
        ),
        _db_case(
            "overlap",
            lambda p: _db_rows(p, only(2, lambda a, r, kv, d: (_overlap(a), r, kv, d))),
            "frame 2",
            "atoms",
        ),
        _db_case(
            "stress_molecule",
            lambda p: _db_rows(p, only(0, lambda a, r, kv, d: (_molecule(a), r, kv, d))),
            "frame 0",
            "stress",
        ),
        _db_case(
            "tiny_cell",
            lambda p: _db_rows(p, only(0, lambda a, r, kv, d: (_scaled(a, 0.003), r, kv, d))),
            "frame 0",
        ),
    ]
    for cut in (0.25, 0.5, 0.9):
        cases.append(_db_case(f"truncated_{cut}", lambda p, c=cut: _truncated_db(p, c)))
    return cases


def _empty_db(path: Path) -> None:
    import ase.db

    path.unlink()
    with ase.db.connect(str(path)) as db:
        db.write(_atoms(0)[0])
        db.delete([1])


def _other_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.execute("create table t (x integer)")
        con.execute("insert into t values (1)")


def _truncated_db(path: Path, fraction: float) -> None:
    _db_rows(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _moved(atoms, x: float):
    atoms.positions[1] = [x, 0.0, 0.0]
    return atoms


def _overlap(atoms):
    atoms.positions[3] = atoms.positions[0] + 0.01
    return atoms


def _molecule(atoms):
    atoms.pbc = False
    return atoms


def _scaled(atoms, factor: float):
    atoms.set_cell(atoms.cell * factor, scale_atoms=True)
    return atoms


# ----------------------------------------------------------------------------- YAML
def base_config(data: str = "data.xyz") -> dict:
    return {
        "seed": 0,
        "data": {"train": data, "valid_count": 2},
        "model": {"r_max": 4.0, "l_max": 1, "channels": 8, "radial_hidden": [16, 16]},
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0},
        "optim": {"lr": 0.01, "batch_size": 2, "max_epochs": 2},
        "output": {"dir": "run", "progress": False},
    }


def _yaml_case(name: str, text: str | bytes, *mentions: str) -> Case:
    def write(d: Path) -> Path:
        path = d / f"{name}.yaml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    return Case(name, "yaml", write, mentions)


def _with(path: tuple[str, ...], value, remove: bool = False) -> str:
    config = base_config()
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if remove:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return yaml.safe_dump(config)


def yaml_cases() -> list[Case]:
    cases = []
    wrong_types = {
        ("seed",): ["abc", [1], {"a": 1}],
        ("dtype",): ["float16", 64],
        ("optim", "lr"): ["fast", [0.1], -1.0, 0.0, float("inf"), float("nan")],
        ("optim", "batch_size"): [2.5, "two", 0, -3, True],
        ("optim", "max_epochs"): [0, -1, "many", 2.5],
        ("optim", "max_time_min"): [-5, "soon", float("nan")],
        ("optim", "scheduler"): ["linear", 3],
        ("optim", "ema_decay"): [1.5, -0.1],
        ("loss", "forces_weight"): [-1, "heavy", float("inf")],
        ("loss", "kind"): ["l1"],
        ("model", "l_max"): [7, -1, "two"],
        ("model", "channels"): [0, "many", 8.5],
        ("model", "r_max"): [0, -2.0, float("inf"), "far"],
        ("model", "radial_hidden"): ["16", [16, "x"]],
        ("model", "elements"): ["Cu", ["Cu", "Xx"], [1, 2]],
        ("data", "valid_fraction"): [1.5, 0, "half"],
        ("data", "train"): [5, [1, 2], None],
        ("data", "train", "energy_unit"): ["kcal", 3],
        ("output", "checkpoint_minutes"): [-1, "often"],
    }
    for path, values in wrong_types.items():
        for value in values:
            name = "type_" + "_".join(path) + f"_{str(value)[:10]}"
            if path[:2] == ("data", "train") and len(path) == 3:
                text = _with(("data", "train"), {"path": "data.xyz", path[2]: value})
            else:
                text = _with(path, value)
            cases.append(_yaml_case(name, text, path[-1]))
    for section in ("", "data", "model", "loss", "optim", "output"):
        path = (section, "learning_rat") if section else ("learning_rat",)
        cases.append(_yaml_case(f"unknown_{section or 'top'}", _with(path, 1), "learning_rat"))
    cases += [
        _yaml_case("nested_optim", _with(("optim", "optim"), {"lr": 0.1}), "optim.optim"),
        _yaml_case("section_is_list", _with(("optim",), [1, 2]), "optim"),
        _yaml_case("section_is_number", _with(("model",), 3), "model"),
        _yaml_case("data_missing", _with(("data",), None, remove=True), "data"),
        _yaml_case(
            "stage_two_bad", _with(("optim", "stage_two"), {"start_fraction": 2}), "start_fraction"
        ),
        _yaml_case("top_list", "- 1\n- 2\n", "mapping"),
        _yaml_case("top_scalar", "hello\n", "mapping"),
        _yaml_case("empty", "", "data"),
        _yaml_case("tab_indent", "data:\n\ttrain: x.xyz\n", "line"),
        _yaml_case("unclosed", "data: {train: x.xyz\n", "line"),
        _yaml_case("bad_indent", "data:\n  train: x\n valid_count: 3\n", "line"),
        _yaml_case("duplicate_key", "seed: 1\nseed: 2\ndata: {train: x.xyz}\n", "seed"),
        _yaml_case("duplicate_nested", "data:\n  train: a.xyz\n  train: b.xyz\n", "train"),
        _yaml_case("invalid_utf8", b"seed: 1\ndata: {train: \xff\xfe.xyz}\n", "line"),
        _yaml_case("billion_laughs", _billion_laughs(), "large"),
        _yaml_case("deep_nesting", "data: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
        _yaml_case("python_tag", "seed: !!python/object/apply:os.system ['echo hi']\n", "line"),
        _yaml_case("huge_int", _with(("seed",), 10**400), "seed"),
        _yaml_case("binary", bytes(range(256)), "line"),
        _yaml_case(
            "test_and_fraction",
            _with(("data",), {"train": "a.xyz", "test": "b.xyz", "test_fraction": 0.2}),
            "test",
        ),
    ]
    return cases


def _billion_laughs() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for k in range(1, 9):
        prev, cur = chr(ord("a") + k - 1), chr(ord("a") + k)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    lines.append("data: {train: x.xyz}")
    lines.append("model: {elements: *i}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- model files
def _model_case(name: str, build: Callable[[Path, Path], None], *mentions: str) -> Case:
    """``build(good_model_path, out_path)`` writes the tampered file."""

    def write(d: Path) -> Path:
        path = d / f"{name}.eqp"
        build(GOOD_MODEL[0], path)
        return path

    return Case(name, "model", write, mentions)


GOOD_MODEL: list[Path] = []  # set by the test module (a small saved model)


def _parts(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _assemble(header: dict | bytes, body: bytes, out: Path, length: int | None = None) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    out.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + body)


def _edit_header(fn: Callable[[dict], None]):
    def build(good: Path, out: Path) -> None:
        header, body = _parts(good)
        fn(header)
        _assemble(header, body, out)

    return build


def _edit_meta(key: str, value):
    def fn(header):
        if value is None:
            header["__metadata__"].pop(key)
        else:
            header["__metadata__"][key] = value

    return _edit_header(fn)


def _edit_config(**changes):
    def fn(header):
        config = json.loads(header["__metadata__"]["config"])
        config.update(changes)
        header["__metadata__"]["config"] = json.dumps(config)

    return _edit_header(fn)


def _first_tensor(header: dict) -> str:
    return sorted(k for k in header if k != "__metadata__")[0]


def _tensor_edit(fn: Callable[[dict], None]):
    def edit(header):
        fn(header[_first_tensor(header)])

    return _edit_header(edit)


def _resave(change: Callable[[dict], dict]):
    def build(good: Path, out: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(good), framework="pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        save_file(change(tensors), str(out), metadata=metadata)

    return build


def model_cases() -> list[Case]:
    import torch

    cases = [
        _model_case(
            "header_length_huge",
            lambda g, o: _assemble(_parts(g)[0], _parts(g)[1], o, length=2**62),
        ),
        _model_case(
            "header_length_past_end", lambda g, o: _assemble(_parts(g)[0], b"", o, length=10**6)
        ),
        _model_case("header_not_json", lambda g, o: _assemble(b"{not json", _parts(g)[1], o)),
        _model_case("header_json_list", lambda g, o: _assemble(b"[1, 2, 3]", _parts(g)[1], o)),
        _model_case("empty_file", lambda g, o: o.write_bytes(b"")),
        _model_case("seven_bytes", lambda g, o: o.write_bytes(b"\x01" * 7)),
        _model_case("random_bytes", lambda g, o: o.write_bytes(bytes(range(256)) * 64)),
        _model_case("pickle", lambda g, o: o.write_bytes(pickle.dumps({"model": [1, 2]}))),
        _model_case("torch_save", lambda g, o: torch.save({"w": torch.zeros(2)}, o)),
        _model_case("zip", lambda g, o: zipfile.ZipFile(o, "w").close()),
    ]
    size = len(GOOD_MODEL[0].read_bytes()) if GOOD_MODEL else 50_000
    for fraction in (0.01, 0.1, 0.5, 0.9, 0.999):
        cut = int(size * fraction)
        cases.append(
            _model_case(
                f"truncated_{fraction}", lambda g, o, c=cut: o.write_bytes(g.read_bytes()[:c])
            )
        )
    tensor_edits = {
        "offsets_past_end": lambda t: t.update(data_offsets=[0, 10**12]),
        "offsets_reversed": lambda t: t.update(data_offsets=[100, 0]),
        "shape_huge": lambda t: t.update(shape=[10**12, 10**6]),
        "shape_negative": lambda t: t.update(shape=[-1]),
        "shape_text": lambda t: t.update(shape="big"),
        "dtype_unknown": lambda t: t.update(dtype="F128"),
        "dtype_I64": lambda t: t.update(dtype="I64"),
        "dtype_F16": lambda t: t.update(dtype="F16"),
        "dtype_BOOL": lambda t: t.update(dtype="BOOL"),
        "dtype_missing": lambda t: t.pop("dtype"),
        "shape_mismatch_offsets": lambda t: t.update(shape=[int(np.prod(t["shape"])) + 1]),
    }
    for name, fn in tensor_edits.items():
        cases.append(_model_case(f"tensor_{name}", _tensor_edit(fn)))
    cases += [
        _model_case("format_tag_missing", _edit_meta("format", None), "format"),
        _model_case("format_tag_other", _edit_meta("format", "mace-model"), "format"),
        _model_case("schema_newer", _edit_meta("schema_version", "99"), "schema"),
        _model_case("schema_text", _edit_meta("schema_version", "one"), "schema"),
        _model_case("schema_negative", _edit_meta("schema_version", "-1"), "schema"),
        _model_case("config_missing", _edit_meta("config", None), "config"),
        _model_case("config_not_json", _edit_meta("config", "{elements: [Cu"), "config"),
        _model_case("config_list", _edit_meta("config", "[1, 2]"), "config"),
        _model_case("extra_not_json", _edit_meta("extra", "{oops"), "extra"),
        _model_case("no_metadata", _edit_header(lambda h: h.pop("__metadata__")), "format"),
    ]
    config_edits = {
        "channels_huge": {"channels": 10**9},
        "channels_other": {"channels": 9},
        "channels_text": {"channels": "many"},
        "layers_huge": {"num_layers": 10**6},
        "radial_huge": {"radial_hidden": [10**8, 10**8]},
        "l_max_99": {"l_max": 99},
        "elements_unknown": {"elements": ["Xx"]},
        "elements_empty": {"elements": []},
        "elements_more": {"elements": ["H", "C", "O", "Cu", "Fe"]},
        "r_max_negative": {"r_max": -1.0},
        "r_max_nan": {"r_max": float("nan")},
        "scale_inf": {"scale": float("inf")},
        "unknown_field": {"colour": "blue"},
        "correlation_9": {"correlation": 9},
        "avg_neighbors_zero": {"avg_num_neighbors": 0.0},
        "e0_text": {"e0": {"H": "low"}},
    }
    for name, change in config_edits.items():
        cases.append(_model_case(f"config_{name}", _edit_config(**change), "config"))

    def drop_one(t):
        t.pop(sorted(t)[0])
        return t

    def wrong_shape(t):
        key = sorted(t)[0]
        t[key] = torch.zeros(*t[key].shape, 2, dtype=t[key].dtype)
        return t

    resaved = {
        "tensor_missing": (drop_one, "missing"),
        "tensor_extra": (lambda t: {**t, "net.extra.weight": torch.zeros(3)}, "unexpected"),
        "tensor_wrong_shape": (wrong_shape, "shape"),
        "tensor_int": (lambda t: {**t, sorted(t)[0]: t[sorted(t)[0]].long()}, "dtype"),
        "tensor_mixed_dtype": (lambda t: {**t, sorted(t)[0]: t[sorted(t)[0]].float()}, "dtype"),
        "tensor_half": (lambda t: {k: v.half() for k, v in t.items()}, "dtype"),
        "tensor_nan": (lambda t: {**t, sorted(t)[1]: t[sorted(t)[1]] * float("nan")}, "finite"),
        "tensor_inf": (lambda t: {**t, sorted(t)[2]: t[sorted(t)[2]] + float("inf")}, "finite"),
        "no_tensors": (lambda t: {}, "tensors"),
    }
    for name, (change, mention) in resaved.items():
        cases.append(_model_case(name, _resave(change), mention))
    return cases


# ----------------------------------------------------------------------------- checkpoints
class _Payload:
    """A pickle that would run code (it only writes a marker file, for the test to check)."""

    marker = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def _checkpoint_case(name: str, build: Callable[[Path], None], *mentions: str) -> Case:
    def write(d: Path) -> Path:
        path = d / f"{name}.pt"
        build(path)
        return path

    return Case(name, "checkpoint", write, mentions)


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped pickle whose loading would run code (writes ``marker``)."""
    import torch

    payload = _Payload()
    payload.marker = str(marker)
    torch.save({"format": "equipot-checkpoint", "schema_version": 2, "model": payload}, path)
    return path


def checkpoint_cases(marker: Path) -> list[Case]:
    import torch

    def valid_like(**changes):
        state = {
            "format": "equipot-checkpoint",
            "schema_version": 2,
            "train_config": "{}",
            "model_config": "{}",
            "model": {},
            "optimizer": {},
            "schedule": {},
            "rng": {},
            "progress": {},
            "plan": {},
            "history": [],
        }
        state.update(changes)
        return lambda p: torch.save({k: v for k, v in state.items() if v is not None}, p)

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "code ran"))

    cases = [
        _checkpoint_case("reduce_payload", lambda p: crafted_checkpoint(p, marker), "weights"),
        _checkpoint_case("plain_pickle", lambda p: p.write_bytes(pickle.dumps(Evil()))),
        _checkpoint_case("random_bytes", lambda p: p.write_bytes(bytes(range(256)) * 32)),
        _checkpoint_case("empty", lambda p: p.write_bytes(b"")),
        _checkpoint_case("list", lambda p: torch.save([1, 2, 3], p), "format"),
        _checkpoint_case("no_format", lambda p: torch.save({"model": {}}, p), "format"),
        _checkpoint_case("schema_newer", valid_like(schema_version=9), "newer"),
        _checkpoint_case("schema_old", valid_like(schema_version=1), "older"),
        _checkpoint_case("schema_text", valid_like(schema_version="2"), "schema"),
        _checkpoint_case("config_not_json", valid_like(train_config="{oops"), "train_config"),
        _checkpoint_case("model_missing", valid_like(model=None), "model"),
        _checkpoint_case("plan_missing", valid_like(plan=None), "plan"),
        _checkpoint_case("history_dict", valid_like(history={}), "history"),
        _checkpoint_case("progress_list", valid_like(progress=[]), "progress"),
    ]
    good = {}
    for cut in (0.1, 0.5, 0.95):

        def truncated(p, c=cut):
            if "data" not in good:
                valid_like()(p)
                good["data"] = p.read_bytes()
            p.write_bytes(good["data"][: int(len(good["data"]) * c)])

        cases.append(_checkpoint_case(f"truncated_{cut}", truncated))
    return cases


def all_cases(marker: Path) -> list[Case]:
    return [
        *extxyz_cases(),
        *npz_cases(),
        *db_cases(),
        *yaml_cases(),
        *model_cases(),
        *checkpoint_cases(marker),
    ]
