"""Training data: readers (extxyz, rMD17, ASE db), HDF5 graph cache, splits, statistics."""

from equipot.data.cache import open_cache
from equipot.data.dataset import Batch, GraphDataset
from equipot.data.frames import Frame
from equipot.data.readers import DataSource, read_frames
from equipot.data.splits import split_indices
from equipot.data.statistics import Statistics, compute_statistics, elements_in

__all__ = [
    "Batch",
    "DataSource",
    "Frame",
    "GraphDataset",
    "Statistics",
    "compute_statistics",
    "elements_in",
    "open_cache",
    "read_frames",
    "split_indices",
]
