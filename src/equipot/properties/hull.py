"""Formation energies of a binary A–B and their lower convex hull.

    ΔE_f(x) = E/atom − (1 − x)·E_A − x·E_B      (x: fraction of B; E_A, E_B per atom of the
                                                  relaxed pure elements)

The hull is the lower convex envelope of {(x, ΔE_f)} together with the pure elements
(0, 0) and (1, 0); structures on it are stable against decomposition into their neighbours.
"""

from __future__ import annotations

import numpy as np


def formation_energy(x: np.ndarray, energy_per_atom: np.ndarray, e_a: float, e_b: float):
    x = np.asarray(x, dtype=np.float64)
    return np.asarray(energy_per_atom, dtype=np.float64) - (1.0 - x) * e_a - x * e_b


def lower_hull(x: np.ndarray, e: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Indices of the points on the lower convex hull, by increasing x (Andrew's monotone
    chain). Points within ``tol`` of a hull edge count as on it only if they are vertices
    of the chain (collinear interior points are dropped)."""
    x, e = np.asarray(x, float), np.asarray(e, float)
    order = np.lexsort((e, x))
    hull: list[int] = []
    for k in order:
        if hull and x[hull[-1]] == x[k]:  # same composition: keep the lowest energy only
            continue
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            cross = (x[j] - x[i]) * (e[k] - e[i]) - (e[j] - e[i]) * (x[k] - x[i])
            if cross <= tol:  # j is not below the segment i–k
                hull.pop()
            else:
                break
        hull.append(int(k))
    return np.array(hull, dtype=np.int64)


def energy_above_hull(x: np.ndarray, e: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Distance of every point above the hull (0 on it), eV/atom."""
    hx, he = np.asarray(x)[vertices], np.asarray(e)[vertices]
    return np.asarray(e) - np.interp(np.asarray(x), hx, he)


def hull_of_entries(x, e) -> dict:
    """Hull vertices (including the pure elements at ΔE_f = 0) and energies above it."""
    x = np.concatenate([[0.0, 1.0], np.asarray(x, float)])
    e = np.concatenate([[0.0, 0.0], np.asarray(e, float)])
    vertices = lower_hull(x, e)
    above = energy_above_hull(x, e, vertices)
    return {
        "vertices_x": x[vertices].tolist(),
        "vertices_e": e[vertices].tolist(),
        "vertex_index": [int(v) - 2 for v in vertices],  # −2 / −1: pure A / pure B
        "above_hull": above[2:].tolist(),
    }
