"""Training configuration: YAML → validated, typed :class:`TrainConfig`.

Every section forbids unknown keys, so a typo (``learning_rat``) is an error naming the key.
``--set section.key=value`` overrides are parsed as YAML scalars and validated the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from equipot.data.readers import DataSource
from equipot.model.config import ModelConfig, Repulsion
from equipot.model.long_range import LongRangeConfig
from equipot.train.finetune import FinetuneConfig

TRAIN_SCHEMA_VERSION = 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value, info):
        """YAML's ``true`` is not a number (pydantic would read it as 1)."""
        if isinstance(value, bool) and info.field_name in cls.model_fields:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation in (int, float, int | None, float | None):
                raise ValueError("expected a number, got a boolean")
        return value


class DataConfig(_Section):
    """Where the frames come from and how they are split."""

    train: DataSource
    valid: DataSource | None = None  # default: valid_count / valid_fraction of `train`
    test: DataSource | None = None  # default: test_count / test_fraction of `train`, if set
    valid_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    valid_count: int | None = Field(None, ge=1)
    test_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    test_count: int | None = Field(None, ge=1)
    train_count: int | None = Field(None, ge=1)
    split_seed: int = Field(0, ge=0, lt=2**63)
    bootstrap_seed: int | None = None  # resample the training split with replacement (committees)
    cache_dir: Path | None = None  # default: <output.dir>/cache
    in_memory: bool | None = None  # default: in memory when the cache is below 2 GiB

    @model_validator(mode="after")
    def _one_test_set(self) -> DataConfig:
        if self.test is not None and (self.test_fraction or self.test_count):
            raise ValueError("give either a test file or test_fraction / test_count, not both")
        if self.valid is not None and (self.test_fraction or self.test_count):
            raise ValueError(
                "test_fraction / test_count split the train file together with the validation "
                "set: give no valid file, or give a test file"
            )
        return self


class RepulsionOptions(_Section):
    """The ZBL term of a model to be trained (``model.repulsion``; ``null``: no term).

    ``switch: covalent`` (default): full repulsion below ``inner`` = 0.5 and none beyond
    ``outer`` = 0.75 × the covalent-radius sum (C–H: 0.53–0.80 Å), the regime where the
    screened nuclear repulsion is the physics. Between that and the shortest distances of the
    training data the network's view is held by the radial floor (``model.radial_floor``), so
    the network cannot dig a hole there. ``switch: data``: per-element switch radii R with
    R_a + R_b ≤ the shortest distance d_ab of each element pair in the training set
    (:func:`~equipot.model.terms.zbl.switch_radii`), full repulsion below 0.85 and none beyond
    0.93 × (R_a + R_b) — a wall right below the data, which closed the hole of a network
    without a floor but overshoots the real repulsion several-fold (methyl acetate
    compressed to 0.75: +93 eV of ZBL against GFN2-xTB's +43 eV in all; issue 10).
    ``radii`` (Å) fixes the radii by hand (elements left out keep their covalent radius)."""

    kind: Literal["zbl"] = "zbl"
    switch: Literal["data", "covalent"] = "covalent"
    inner: float | None = Field(None, gt=0.0)
    outer: float | None = Field(None, gt=0.0)
    radii: dict[str, float] | None = None

    DEFAULTS: ClassVar[dict[str, tuple[float, float]]] = {
        "data": (0.85, 0.93),
        "covalent": (0.5, 0.75),
    }

    @classmethod
    def of(cls, repulsion: Repulsion | None) -> RepulsionOptions | None:
        """The options that resolve to a model's ``repulsion`` (fine-tuning keeps it)."""
        if repulsion is None:
            return None
        switch = "covalent" if repulsion.radii is None else "data"
        return cls(
            kind=repulsion.kind,
            switch=switch,
            inner=repulsion.inner,
            outer=repulsion.outer,
            radii=repulsion.radii,
        )

    def resolve(self, elements: list[str], shortest: dict[str, float] | None = None) -> Repulsion:
        """The model's :class:`Repulsion`; ``shortest`` ("A-B": Å, the training statistics)
        is needed for ``switch: data`` unless ``radii`` are given (without it, e.g. to
        validate the architecture before the data are read, the covalent radii stand in)."""
        from equipot.model.terms.zbl import switch_radii

        inner, outer = self.DEFAULTS[self.switch]
        inner = self.inner if self.inner is not None else inner
        outer = self.outer if self.outer is not None else outer
        radii = self.radii
        if radii is None and self.switch == "data" and shortest is not None:
            pairs = {tuple(key.split("-", 1)): d for key, d in shortest.items()}
            radii = switch_radii(pairs, elements)  # R_a + R_b ≤ shortest d_ab
        return Repulsion(kind=self.kind, inner=inner, outer=outer, radii=radii)


class ModelOptions(_Section):
    """Architecture (any :class:`ModelConfig` field) and statistics overrides.

    ``elements`` defaults to those found in the training data; ``e0`` / ``scale`` / ``shift``
    / ``avg_num_neighbors`` left out are computed from the training set.
    """

    elements: list[str] | None = None
    r_max: float = 5.0
    l_max: int = 2
    hidden_l_max: int | None = None
    channels: int = 32
    num_layers: int = 2
    correlation: int = 3
    num_radial: int = 8
    radial_hidden: list[int] = Field(default_factory=lambda: [64, 64, 64])
    envelope_exponent: int = 6
    readout_hidden: int = 16
    parity: bool = True
    long_range: LongRangeConfig | None = None  # electrostatics (equipot.model.long_range)
    repulsion: RepulsionOptions | None = Field(default_factory=RepulsionOptions)  # null: none
    heads: dict[str, dict | str | None] = Field(
        default_factory=dict, description="tensor heads (equipot.model.heads.config)"
    )
    # bound each atom's network energy at ± saturation × |mean binding energy per atom| of the
    # training set (equipot.model.saturation); null: unbounded (default)
    saturation: float | None = Field(None, gt=0.0)
    # the network reads no distance shorter than the training data's shortest of each element
    # pair (equipot.nn.radial_floor); "none": it reads every distance as it is
    radial_floor: Literal["data", "none"] = "data"
    radial_floor_softness: float = Field(0.1, gt=0.0, lt=1.0)
    # no layer's aggregated messages larger than on the training set, measured after training
    # (equipot.nn.feature_ceiling); "none": unbounded
    feature_ceiling: Literal["data", "none"] = "data"
    feature_ceiling_softness: float = Field(1.0, gt=0.0)
    e0: dict[str, float] | None = None
    scale: float | None = None
    shift: float | None = None
    avg_num_neighbors: float | None = None

    def saturation_bound(self, binding_per_atom: float, e0_source: dict[str, str]) -> float | None:
        """The model's bound c (eV) for these options and the training statistics."""
        if self.saturation is None:
            return None
        fitted = sorted(e for e, source in e0_source.items() if source == "least-squares")
        if fitted or abs(binding_per_atom) < 0.05:
            raise ValueError(
                "model.saturation is a multiple of the mean binding energy per atom, which needs "
                "E0 of isolated atoms (model.e0 or isolated-atom frames): "
                + (
                    f"E0 of {fitted} are least-squares fits"
                    if fitted
                    else f"the binding energy is {binding_per_atom:.3f} eV/atom"
                )
            )
        return self.saturation * abs(binding_per_atom)

    def architecture(
        self, elements: list[str] | None = None, shortest: dict[str, float] | None = None
    ) -> dict:
        """ModelConfig fields of these options (the ZBL switch resolved with the training
        statistics ``shortest`` where given, see :meth:`RepulsionOptions.resolve`)."""
        from equipot.nn.radial_floor import floor_from_shortest

        stats = {"elements", "e0", "scale", "shift", "avg_num_neighbors", "saturation"}
        out = self.model_dump(exclude=stats | {"repulsion", "radial_floor", "feature_ceiling"})
        out["feature_ceiling"] = None  # measured on the trained model (train/run.py)
        rep = self.repulsion
        out["repulsion"] = None if rep is None else rep.resolve(elements or [], shortest)
        out["radial_floor"] = (
            floor_from_shortest(shortest) if self.radial_floor == "data" and shortest else None
        )
        return out


class LossConfig(_Section):
    """L = w_E·⟨ρ(ΔE/N)⟩_systems + w_F·⟨ρ(ΔF)⟩_components + w_S·⟨ρ(Δσ)⟩_components, with
    ρ = x² (``mse``) or 2·Huber (``huber``), each term weighted per config (the data's
    ``config_weight`` × ``config_type_weights``) and forces per element (``element_weights``)."""

    energy_weight: float = Field(1.0, ge=0.0)
    forces_weight: float = Field(100.0, ge=0.0)
    stress_weight: float = Field(0.0, ge=0.0)
    kind: Literal["mse", "huber"] = "mse"
    huber_delta: float = Field(0.01, gt=0.0, description="eV/atom, eV/Å, eV/Å³")
    config_type_weights: dict[str, float] = Field(default_factory=dict)
    element_weights: dict[str, float] = Field(default_factory=dict)
    # fairness across config types (train/group_balance.py): none | inverse_frequency | dro
    group_balance: Literal["none", "inverse_frequency", "dro"] = "none"
    dro_step: float = Field(0.01, gt=0.0, description="group-DRO step size η")
    label_weights: dict[str, float] = Field(
        default_factory=dict,
        description="tensor labels (train/labels.py): head name → weight (default 1); "
        "'bec' trains ∂μ/∂r of a dipole head (default 0)",
    )

    @field_validator("element_weights")
    @classmethod
    def _elements(cls, weights: dict[str, float]) -> dict[str, float]:
        from ase.data import atomic_numbers

        unknown = [e for e in weights if e not in atomic_numbers or e == "X"]
        if unknown:
            raise ValueError(f"unknown chemical element symbol(s): {unknown}")
        return weights


class StageTwo(_Section):
    """A late stage (MACE's "SWA" stage): new loss weights and learning rate."""

    start_fraction: float = Field(0.75, gt=0.0, lt=1.0, description="of epochs / time budget")
    energy_weight: float = Field(1000.0, ge=0.0)
    forces_weight: float = Field(100.0, ge=0.0)
    stress_weight: float = Field(0.0, ge=0.0)
    lr: float | None = Field(None, gt=0.0)


class OptimConfig(_Section):
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(0.01, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    amsgrad: bool = True
    batch_size: int = Field(5, ge=1, description="global batch (all processes together)")
    valid_batch_size: int = Field(20, ge=1)
    max_epochs: int = Field(100, ge=1)
    max_time_min: float | None = Field(None, gt=0.0, description="wall-clock training budget")
    scheduler: Literal["plateau", "cosine", "constant"] = "plateau"
    plateau_factor: float = Field(0.8, gt=0.0, lt=1.0)
    plateau_patience: int = Field(50, ge=0, description="epochs")
    min_lr: float = Field(1e-6, ge=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    ema_decay: float | None = Field(0.99, gt=0.0, lt=1.0)
    grad_clip: float | None = Field(10.0, gt=0.0)
    learn_e0: bool | Literal["auto"] = Field(
        "auto",
        description="refine E0 per element (train/model.py); auto: only least-squares E0, "
        "never E0 given or taken from isolated atoms",
    )
    learn_shift: bool = Field(
        False, description="refine a coordination-linear term (schema-1 behaviour; unbounded)"
    )
    early_stop_patience: int | None = Field(None, ge=1, description="epochs without improvement")
    stage_two: StageTwo | None = None
    nonfinite_retries: int = Field(
        3, ge=0, description="roll-backs after a non-finite loss / gradient before stopping"
    )
    nonfinite_lr_factor: float = Field(0.5, gt=0.0, lt=1.0, description="lr × this per roll-back")


class OutputConfig(_Section):
    dir: Path = Path("runs/equipot")
    progress: bool = True  # tqdm bar with live losses
    plot: bool = True  # learning-curve PNG every epoch
    checkpoint_minutes: float | None = Field(
        10.0, gt=0.0, description="also checkpoint inside an epoch after this much wall time"
    )
    checkpoint_steps: int | None = Field(None, ge=1, description="and/or every this many steps")


class UncertaintyOptions(_Section):
    """After training: latent Gaussians and the last-layer posterior fitted on the training
    split, calibrated (scales, conformal force ball) on the validation split, stored in
    best.eqp / final.eqp (see equipot.uq; ``equipot calibrate`` recalibrates on other data)."""

    fit: bool = True
    force_frames: int = Field(100, ge=0, description="frames for the force rows of G")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="miscoverage of the force ball")


class TrainConfig(_Section):
    schema_version: int = TRAIN_SCHEMA_VERSION
    seed: int = Field(0, ge=0, lt=2**63)
    dtype: Literal["float32", "float64"] = "float64"
    num_threads: int | None = Field(None, ge=1, description="torch threads per process")
    data: DataConfig
    model: ModelOptions = Field(default_factory=ModelOptions)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    finetune: FinetuneConfig | None = None  # start from a trained model (train/finetune.py)
    uncertainty: UncertaintyOptions = Field(default_factory=UncertaintyOptions)

    @field_validator("schema_version")
    @classmethod
    def _supported(cls, version: int) -> int:
        if version > TRAIN_SCHEMA_VERSION:
            raise ValueError(f"schema_version {version} is newer than this equipot supports")
        return version

    def check_model(self, elements: list[str]) -> ModelConfig:
        """Validate the architecture early (a ModelConfig with placeholder statistics)."""
        return ModelConfig(elements=elements, **self.model.architecture(elements))


def parse_override(text: str) -> tuple[list[str], object]:
    """``"optim.lr=1e-3"`` → (["optim", "lr"], 0.001); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} must read key.sub=value")
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str):  # data.train: path → {path: ...}
                child = node[part] = {"path": child}
            elif not isinstance(child, dict):
                raise ValueError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return raw


MAX_NODES = 100_000  # a config is small; YAML aliases must not expand it into millions


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys and alias bombs ("billion laughs")."""

    def compose_document(self):
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n) -> int:
            if id(n) not in sizes:
                children = n.value if isinstance(n.value, list) else []
                flat = [
                    c for pair in children for c in (pair if isinstance(pair, tuple) else [pair])
                ]
                sizes[id(n)] = 1 + sum(size(c) for c in flat)
                if sizes[id(n)] > MAX_NODES:
                    raise yaml.YAMLError(f"the document is too large (over {MAX_NODES} entries)")
            return sizes[id(n)]

        size(node)
        return node

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_yaml(path: Path):
    """Parse a YAML file; every problem is a one-line ValueError naming file and line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path} line {line}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"{where}: invalid YAML: {' '.join(str(problem).split())}") from None
    except RecursionError:
        raise ValueError(f"{path}: invalid YAML: nested too deeply") from None


def load_config(source: str | Path | dict, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML file (or a dict), apply ``--set`` overrides, validate."""
    where = "config"
    if isinstance(source, dict):
        raw = yaml.safe_load(yaml.safe_dump(source))  # deep copy of plain data
    else:
        where = str(source)
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        raw = read_yaml(path)
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping")
    raw = apply_overrides(raw, overrides or [])
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{where}: invalid training config: {_describe(exc)}") from None
    except RecursionError:
        raise ValueError(f"{where}: invalid training config: nested too deeply") from None
    try:  # architecture limits (l_max ≤ 3, ...) fail now, not after preprocessing the data
        config.check_model(config.model.elements or ["H"])
    except ValidationError as exc:
        raise ValueError(f"{where}: invalid model options: {_describe(exc, 'model.')}") from None
    return config


def _describe(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        key = prefix + ".".join(str(p) for p in err["loc"])
        message = (
            "unknown key (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        )
        lines.append(f"{key}: {message}")
    return "; ".join(lines)  # one line: CLI errors and logs stay greppable


def save_config(config: TrainConfig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path
