"""Internal coordinates of a scan: which atoms move, how to set the coordinate, and the
generalised force along it.

A torsion i–j–k–l turns the fragment on k's side of the j–k bond about the j→k axis; a stretch
i–j moves the fragment on j's side of the bond along the i→j direction. Fragments come from the
bond graph (ASE's natural cutoffs); a bond inside a ring has no side, which is an error for a
torsion and moves atom j alone for a stretch.

Generalised force (minus the derivative of the energy along the coordinate) from the atomic
forces F_a of the moving fragment M, with axis ê and pivot r_k (torsion) or direction ê
(stretch):

    f_φ = Σ_{a∈M} F_a · (ê × (r_a − r_k))      (eV/rad),     f_d = Σ_{a∈M} F_a · ê   (eV/Å)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list


def bonds(atoms: Atoms, factor: float = 1.2) -> list[set[int]]:
    """Neighbours of each atom within ``factor`` × the sum of covalent radii."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=factor))
    graph: list[set[int]] = [set() for _ in range(len(atoms))]
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        graph[a].add(b)
    return graph


def side_of(atoms: Atoms, a: int, b: int) -> np.ndarray | None:
    """Atoms reached from ``b`` without crossing the bond a–b (b included); ``None`` when a is
    reached anyway (a–b lies in a ring)."""
    graph = bonds(atoms)
    seen, stack = {b}, [b]
    while stack:
        atom = stack.pop()
        for n in graph[atom]:
            if n in seen or (atom == b and n == a):
                continue
            seen.add(n)
            stack.append(n)
    return None if a in seen else np.array(sorted(seen))


@dataclass(frozen=True)
class Coordinate:
    """A torsion (4 indices, degrees) or a stretch (2 indices, Å) and the atoms it moves."""

    kind: str  # "torsion" | "stretch"
    indices: tuple[int, ...]
    moving: tuple[int, ...]

    @property
    def unit(self) -> str:
        return "deg" if self.kind == "torsion" else "Å"

    @property
    def label(self) -> str:
        return f"{self.kind} {'-'.join(str(i) for i in self.indices)}"

    @classmethod
    def torsion(cls, atoms: Atoms, indices) -> Coordinate:
        i, j, k, l = _check(atoms, indices, 4)
        side = side_of(atoms, j, k)
        if side is None:
            raise ValueError(
                f"torsion {i}-{j}-{k}-{l}: the bond {j}-{k} is part of a ring, so no fragment "
                "can turn about it"
            )
        if i in side:
            raise ValueError(f"torsion {i}-{j}-{k}-{l}: atom {i} is on the turning side")
        if l not in side:
            raise ValueError(
                f"torsion {i}-{j}-{k}-{l}: atom {l} is not on the turning side of the bond "
                f"{j}-{k} (turning atoms: {', '.join(str(a) for a in side)}), so turning would "
                "not change this dihedral"
            )
        return cls("torsion", (i, j, k, l), tuple(int(a) for a in side))

    @classmethod
    def stretch(cls, atoms: Atoms, indices) -> Coordinate:
        i, j = _check(atoms, indices, 2)
        side = side_of(atoms, i, j) if j in bonds(atoms)[i] else None
        moving = (j,) if side is None else tuple(int(a) for a in side)
        return cls("stretch", (i, j), moving)

    def value(self, atoms: Atoms) -> float:
        if self.kind == "torsion":
            return float(atoms.get_dihedral(*self.indices))
        return float(atoms.get_distance(*self.indices))

    def set(self, atoms: Atoms, target: float) -> None:
        """Move the fragment rigidly so the coordinate reads ``target``."""
        pos = atoms.positions
        moving = list(self.moving)
        if self.kind == "torsion":
            _, j, k, _ = self.indices
            axis = pos[k] - pos[j]
            axis /= np.linalg.norm(axis)
            angle = np.radians(target - self.value(atoms))
            rel = pos[moving] - pos[k]
            cos, sin = np.cos(angle), np.sin(angle)
            rotated = (
                rel * cos + np.cross(axis, rel) * sin + np.outer(rel @ axis, axis) * (1.0 - cos)
            )
            pos[moving] = pos[k] + rotated
        else:
            i, j = self.indices
            direction = pos[j] - pos[i]
            direction /= np.linalg.norm(direction)
            pos[moving] += (target - self.value(atoms)) * direction
        atoms.positions = pos

    def generalized_force(self, atoms: Atoms, forces: np.ndarray) -> float:
        """−dE/dq per degree (torsion) or per Å (stretch); see the module docstring."""
        pos = atoms.positions
        moving = list(self.moving)
        if self.kind == "torsion":
            _, j, k, _ = self.indices
            axis = pos[k] - pos[j]
            axis /= np.linalg.norm(axis)
            lever = np.cross(axis, pos[moving] - pos[k])
            return float(np.sum(forces[moving] * lever)) * np.pi / 180.0
        i, j = self.indices
        direction = pos[j] - pos[i]
        direction /= np.linalg.norm(direction)
        return float(np.sum(forces[moving] @ direction))


def _check(atoms: Atoms, indices, count: int) -> tuple[int, ...]:
    indices = tuple(int(a) for a in indices)
    if len(indices) != count:
        raise ValueError(f"expected {count} atom indices, got {len(indices)}")
    if len(set(indices)) != count:
        raise ValueError(f"atom indices must differ: {indices}")
    bad = [a for a in indices if not 0 <= a < len(atoms)]
    if bad:
        raise ValueError(f"atom index {bad[0]} out of range (the structure has {len(atoms)} atoms)")
    return indices
