"""Geometry utilities: neighbour lists and cell helpers."""

from equipot.geometry.neighbors import neighbor_list

__all__ = ["neighbor_list"]
