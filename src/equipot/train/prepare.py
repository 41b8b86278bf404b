"""Before training: caches, splits, statistics and the model configuration.

Runs once in the launching process (before any worker starts), so caches are built once and
every process trains the same model on the same split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers as Z_OF

from equipot.data.cache import num_frames, open_cache
from equipot.data.dataset import GraphDataset
from equipot.data.readers import DataSource
from equipot.data.splits import split_indices
from equipot.data.statistics import check_dataset_elements, compute_statistics, elements_in
from equipot.model.config import ModelConfig
from equipot.train.config import TrainConfig, save_config


@dataclass
class DataPart:
    cache: Path
    indices: np.ndarray
    name: str

    def open(self, in_memory: bool | None = None) -> GraphDataset:
        return GraphDataset(self.cache, self.indices, in_memory=in_memory, name=self.name)


@dataclass
class Prepared:
    run_dir: Path
    train: DataPart
    valid: DataPart
    test: DataPart | None
    model_config: ModelConfig  # with the statistics
    statistics: dict
    finetune: object | None = None  # FinetunePlan of a fine-tuning run (train/finetune.py)

    def energy_reference(self) -> np.ndarray:
        """(119,) E0 per atomic number, subtracted from the labels during training."""
        table = np.zeros(119)
        for element, value in self.model_config.e0.items():
            table[Z_OF[element]] = value
        return table


def cache_dir(config: TrainConfig) -> Path:
    return config.data.cache_dir or config.output.dir / "cache"


def _part(source: DataSource, config: TrainConfig, verbose: bool, indices=None) -> DataPart:
    path = open_cache(source, config.model.r_max, cache_dir(config), verbose=verbose)
    if indices is None:
        indices = np.arange(num_frames(path))
    return DataPart(path, np.asarray(indices, np.int64), str(source.path))


def prepare(
    config: TrainConfig, *, model_config: ModelConfig | None = None, verbose: bool = True
) -> Prepared:
    """Build / reuse the caches, split, and compute the statistics (unless ``model_config``
    is given, e.g. from a checkpoint being resumed)."""
    d = config.data
    run_dir = config.output.dir
    run_dir.mkdir(parents=True, exist_ok=True)
    train_all = _part(d.train, config, verbose)
    test = _part(d.test, config, verbose) if d.test is not None else None
    n = len(train_all.indices)
    if d.valid is None:
        n_test = d.test_count or (round(d.test_fraction * n) if d.test_fraction else 0)
        parts = split_indices(
            n,
            valid_count=d.valid_count,
            valid_fraction=d.valid_fraction,
            train_count=d.train_count,
            seed=d.split_seed,
            test_count=n_test,
        )
        train = DataPart(train_all.cache, parts[0], train_all.name)
        valid = DataPart(train_all.cache, parts[1], train_all.name)
        if n_test:
            test = DataPart(train_all.cache, parts[2], train_all.name)
    else:
        train = train_all
        if d.train_count is not None:
            train.indices = np.sort(
                np.random.default_rng(d.split_seed).permutation(train.indices)[: d.train_count]
            )
        valid = _part(d.valid, config, verbose)

    if model_config is None:
        train_set = train.open(d.in_memory)
        elements = config.model.elements or elements_in(train_set)
        stats = compute_statistics(
            train_set,
            elements,
            config.model.r_max,
            config.model.envelope_exponent,
            e0=config.model.e0,
        ).as_dict()
        for key in ("scale", "shift", "avg_num_neighbors"):
            if getattr(config.model, key) is not None:
                stats[key] = getattr(config.model, key)
        model_config = ModelConfig(
            elements=elements,
            e0=stats["e0"],
            scale=stats["scale"],
            shift=stats["shift"],
            avg_num_neighbors=stats["avg_num_neighbors"],
            **config.model.architecture(),
        )
    else:
        stats = {k: getattr(model_config, k) for k in ("e0", "scale", "shift", "avg_num_neighbors")}
    for part in (valid, test):
        if part is not None:
            check_dataset_elements(part.open(d.in_memory), model_config.elements)
    save_config(config, run_dir / "config.yaml")
    (run_dir / "data.json").write_text(
        json.dumps(
            {
                "train": {"file": train.name, "frames": train.indices.tolist()},
                "valid": {"file": valid.name, "frames": valid.indices.tolist()},
                "test": None
                if test is None
                else {"file": test.name, "frames": test.indices.tolist()},
                "statistics": stats,
            },
            indent=1,
        )
    )
    return Prepared(run_dir, train, valid, test, model_config, stats)
