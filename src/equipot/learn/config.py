"""``equipot learn`` configuration: YAML → validated :class:`LearnConfig`.

Paths in the file are taken relative to the YAML file's folder. ``train`` is a training config
without ``data`` / ``output`` (the loop fills those in every round), ``reference`` names an
ASE calculator (see :mod:`equipot.learn.reference`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceConfig(_Section):
    calculator: str = Field(
        description="emt | tblite | pyscf | lammps | package.module:factory (called with options)"
    )
    options: dict = Field(default_factory=dict)


class InitialConfig(_Section):
    structures: Path  # starting structures of the MD replicas (any file ASE reads)
    labelled: Path | None = None  # frames already labelled (extxyz) to start from
    count: int = Field(8, ge=1, description="without `labelled`: rattled copies to label")
    rattle: float = Field(0.05, ge=0.0, description="Å, for those copies")


class Replica(_Section):
    temperature: float = Field(gt=0.0, description="K")
    pressure: float | None = Field(None, description="GPa: NPT; None: NVT")
    steps: int = Field(500, ge=1)


class ExploreConfig(_Section):
    pool: Path | None = None  # select from this unlabelled pool instead of running MD
    replicas: list[Replica] = Field(default_factory=lambda: [Replica(temperature=300.0)])
    timestep: float = Field(2.0, gt=0.0, description="fs")
    tau: float = Field(100.0, gt=0.0, description="thermostat time, fs")
    snapshot_every: int = Field(10, ge=1)
    max_force_radius: float | None = Field(None, gt=0.0, description="alarm, eV/Å")
    max_latent_distance: float | None = Field(None, gt=0.0, description="alarm")
    on_alarm: Literal["stop", "write"] = "write"
    min_distance: float = Field(0.5, ge=0.0, description="Å: closer pairs are not candidates")


class SelectConfig(_Section):
    per_round: int = Field(10, ge=1, description="labels added in round 1")
    growth: float = Field(
        1.0, ge=1.0, description="per_round × growth^(r−1) in round r (2: the labels double)"
    )
    method: Literal["uncertainty", "random"] = "uncertainty"
    score: Literal["auto", "force_radius", "committee", "latent", "energy_std"] = "auto"
    pool_factor: float = Field(3.0, ge=1.0, description="FPS among the top factor×per_round")
    diversity: bool = True  # farthest-point sampling in latent space within that pool
    strategy: Literal["top", "weighted"] = Field(
        "top", description="top: FPS among the most uncertain; weighted: score × distance, all"
    )


class StopConfig(_Section):
    max_labels: int = Field(200, ge=1)
    max_rounds: int = Field(10, ge=1)
    target_force_mae: float | None = Field(None, gt=0.0, description="eV/Å on `test`")
    test: Path | None = None  # labelled frames for the learning curve and the target


class LearnConfig(_Section):
    reference: ReferenceConfig
    initial: InitialConfig
    train: dict = Field(default_factory=dict, description="training config, no data/output")
    explore: ExploreConfig = Field(default_factory=ExploreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    committee: int = Field(1, ge=1, description="members trained per round (>1: committee)")
    workers: int = Field(2, ge=1, description="labelling processes")
    min_steps: int | None = Field(
        None, ge=1, description="optimizer steps per round at least (epochs raised for few labels)"
    )
    valid_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 0
    out: Path = Path("runs/learn")

    @model_validator(mode="after")
    def _train_section(self) -> LearnConfig:
        for key in ("data", "output"):
            if key in self.train:
                raise ValueError(f"train.{key} is set by the loop every round: leave it out")
        return self

    def resolve(self, base: Path) -> LearnConfig:
        """Paths relative to ``base`` (the YAML file's folder) made absolute."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None or p.is_absolute() else base / p

        return self.model_copy(
            update={
                "initial": self.initial.model_copy(
                    update={
                        "structures": fix(self.initial.structures),
                        "labelled": fix(self.initial.labelled),
                    }
                ),
                "explore": self.explore.model_copy(update={"pool": fix(self.explore.pool)}),
                "stop": self.stop.model_copy(update={"test": fix(self.stop.test)}),
                "out": fix(self.out),
            }
        )


def load_learn_config(path: str | Path, overrides: list[str] | None = None) -> LearnConfig:
    from equipot.train.config import _describe, apply_overrides

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a learn config must be a YAML mapping")
    raw = apply_overrides(raw, overrides or [])
    try:
        config = LearnConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid learn config:\n{_describe(exc)}") from None
    return config.resolve(path.resolve().parent)
