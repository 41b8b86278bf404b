"""Before training: caches, splits, statistics, data coverage and the model configuration.

Runs once, in the launching process or in rank 0 of a ``torchrun`` job (the other ranks wait,
then read what rank 0 wrote with ``write=False``), so caches are built once and every process
trains the same model on the same split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers as Z_OF

from equipot.data.cache import num_frames, open_cache, read_key
from equipot.data.coverage import check_coverage
from equipot.data.dataset import GraphDataset
from equipot.data.readers import DataSource
from equipot.data.splits import split_indices
from equipot.data.statistics import check_dataset_elements, compute_statistics, elements_in
from equipot.model.config import ModelConfig
from equipot.persist import atomic_write
from equipot.train.config import TrainConfig, save_config
from equipot.train.labels import check_present, head_scales, label_weights, with_labels


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
    data_hashes: dict = field(default_factory=dict)  # part → SHA-256 of its source file
    coverage: dict = field(default_factory=dict)  # part → frames with forces / stress
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
    arch = config.check_model(config.model.elements or ["H"])
    if arch.heads:  # tensor labels the heads train on
        source = with_labels(source, arch, label_weights(arch, config.loss.label_weights))
    path = open_cache(source, config.model.r_max, cache_dir(config), verbose=verbose)
    if indices is None:
        indices = np.arange(num_frames(path))
    return DataPart(path, np.asarray(indices, np.int64), str(source.path))


def prepare(
    config: TrainConfig,
    *,
    model_config: ModelConfig | None = None,
    verbose: bool = True,
    write: bool = True,
) -> Prepared:
    """Build / reuse the caches, split, check which frames have forces / stresses, and compute
    the statistics (unless ``model_config`` is given, e.g. from a checkpoint being resumed).
    ``write=False``: write nothing into the run directory (other ranks of a torchrun job)."""
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
    if d.bootstrap_seed is not None:  # same frames, drawn with replacement (a committee member)
        draw = np.random.default_rng(d.bootstrap_seed).integers(
            0, len(train.indices), len(train.indices)
        )
        train = DataPart(train.cache, np.sort(train.indices[draw]), train.name)

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
            saturation=config.model.saturation_bound(stats["binding_per_atom"], stats["e0_source"]),
            **config.model.architecture(elements, stats["shortest"]),
        )
        if model_config.heads:
            weights = label_weights(model_config, config.loss.label_weights)
            check_present(train_set, with_labels(d.train, model_config, weights), weights)
            scales = head_scales(train_set, model_config, weights)
            stats["head_scales"] = scales
            heads = {
                name: head.model_copy(update={"scale": scales.get(name, head.scale)})
                for name, head in model_config.heads.items()
            }
            model_config = model_config.model_copy(update={"heads": heads})
    else:
        stats = {k: getattr(model_config, k) for k in ("e0", "scale", "shift", "avg_num_neighbors")}
    for part in (valid, test):
        if part is not None:
            check_dataset_elements(part.open(d.in_memory), model_config.elements)
    named = {"train": train, "valid": valid, "test": test}
    sources = {
        "train": (d.train, "data.train"),
        "valid": (d.train, "data.train") if d.valid is None else (d.valid, "data.valid"),
        "test": (d.test, "data.test") if d.test is not None else (d.train, "data.train"),
    }
    parts = {
        name: (part.open(d.in_memory), *sources[name])
        for name, part in named.items()
        if part is not None
    }
    coverage, report = check_coverage(parts, _loss_weights(config))
    if verbose and write:
        for line in report:
            print(line)
    hashes = {name: read_key(part.cache)["sha256"] for name, part in named.items() if part}
    prepared = Prepared(run_dir, train, valid, test, model_config, stats, hashes, coverage)
    if write:
        _write_run_files(config, prepared)
    return prepared


def _loss_weights(config: TrainConfig) -> dict[str, float]:
    """Largest weight of each quantity over the stages."""
    stages = [config.loss] + ([config.optim.stage_two] if config.optim.stage_two else [])
    return {
        "forces": max(s.forces_weight for s in stages),
        "stress": max(s.stress_weight for s in stages),
    }


def _write_run_files(config: TrainConfig, p: Prepared) -> None:
    def part(x: DataPart | None):
        return None if x is None else {"file": x.name, "frames": x.indices.tolist()}

    save_config(config, p.run_dir / "config.yaml")
    payload = {
        "train": part(p.train),
        "valid": part(p.valid),
        "test": part(p.test),
        "statistics": p.statistics,
        "coverage": p.coverage,
        "sha256": p.data_hashes,
        "model_config": p.model_config.model_dump(mode="json"),
    }
    atomic_write(p.run_dir / "data.json", json.dumps(payload, indent=1))


def prepared_model_config(run_dir: Path) -> ModelConfig:
    """The model configuration (with statistics) that rank 0 wrote into data.json."""
    data = json.loads((Path(run_dir) / "data.json").read_text())
    return ModelConfig.model_validate(data["model_config"])
