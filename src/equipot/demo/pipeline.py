"""The demo as a pipeline of plain functions: generate → train → evaluate → report.

Each step takes and returns paths / plain data, so later steps (molecular dynamics, property
tables) can be appended without touching the earlier ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from equipot.demo.emt_data import write_dataset


@dataclass(frozen=True)
class DemoSettings:
    train_frames: int  # training + validation structures
    test_frames: int
    valid_count: int
    channels: int
    radial_hidden: tuple[int, ...]
    max_epochs: int
    minutes: float  # training wall-clock budget


FULL = DemoSettings(
    train_frames=300,
    test_frames=60,
    valid_count=20,
    channels=16,
    radial_hidden=(32, 32),
    max_epochs=400,
    minutes=3.5,
)
QUICK = DemoSettings(
    train_frames=16,
    test_frames=4,
    valid_count=4,
    channels=8,
    radial_hidden=(16, 16),
    max_epochs=2,
    minutes=0.3,
)


@dataclass
class DemoResult:
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # test-set errors of the trained model
    properties: str = ""  # fcc Cu properties of the model next to EMT's (text table)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step


def demo_config(train_path: Path, run_dir: Path, settings: DemoSettings, seed: int = 0) -> dict:
    """The training config the demo uses (``examples/cu_emt.yaml`` is the same in YAML)."""
    return {
        "seed": seed,
        "dtype": "float64",
        "data": {"train": {"path": str(train_path)}, "valid_count": settings.valid_count},
        "model": {
            "r_max": 4.5,
            "l_max": 2,
            "channels": settings.channels,
            "num_layers": 2,
            "correlation": 3,
            "radial_hidden": list(settings.radial_hidden),
        },
        "loss": {"energy_weight": 10.0, "forces_weight": 10.0, "stress_weight": 100.0},
        "optim": {
            "lr": 0.01,
            "batch_size": 4,
            "valid_batch_size": 10,
            "max_epochs": settings.max_epochs,
            "max_time_min": settings.minutes,
            "scheduler": "cosine",
            "min_lr": 1e-4,
            "ema_decay": 0.99,
            "stage_two": {
                "start_fraction": 0.75,
                "energy_weight": 1000.0,
                "forces_weight": 10.0,
                "stress_weight": 100.0,
            },
        },
        "output": {"dir": str(run_dir)},
    }


def generate(out_dir: Path, settings: DemoSettings, seed: int = 0) -> dict[str, Path]:
    """EMT-labelled copper structures: a training file and a held-out test file."""
    data = Path(out_dir) / "data"
    return {
        "train_data": write_dataset(data / "cu_train.xyz", settings.train_frames, seed),
        "test_data": write_dataset(data / "cu_test.xyz", settings.test_frames, seed + 1000),
    }


def train_model(
    train_path: Path, out_dir: Path, settings: DemoSettings, seed: int = 0, progress: bool = True
) -> dict[str, Path]:
    """Train on ``train_path``; returns the paths of the model files and logs."""
    import shutil

    from equipot.train import load_config, train

    run_dir = Path(out_dir) / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo always starts afresh
    config = load_config(demo_config(train_path, run_dir, settings, seed))
    config = config.model_copy(
        update={"output": config.output.model_copy(update={"progress": progress})}
    )
    result = train(config, verbose=progress)
    return {
        "model": result.best_model,
        "learning_curve": run_dir / "learning_curve.png",
        "log": run_dir / "log.csv",
        "run_dir": run_dir,
    }


def evaluate_model(model_path: Path, test_path: Path, out_dir: Path) -> tuple[dict, dict]:
    """Errors on the held-out structures, a parity plot and a JSON file."""
    from equipot.model.io import load_model
    from equipot.train.evaluate import evaluate_file
    from equipot.train.report import parity_plot, write_json

    model = load_model(model_path, dtype=torch.float64)
    metrics, arrays = evaluate_file(model, test_path, batch_size=10)
    out_dir = Path(out_dir)
    files = {
        "parity_plot": parity_plot(out_dir / "parity.png", arrays, "equipot vs EMT (test set)"),
        "metrics": write_json(out_dir / "test_metrics.json", metrics),
    }
    return metrics, files


def compare_properties(model_path: Path, out_dir: Path) -> tuple[str, dict]:
    """Phonons at X and L, C11/C12/C44, γ(111) and E_vac of the model next to EMT's own."""
    import warnings

    from ase.calculators.emt import EMT

    from equipot.calculator import EquipotCalculator
    from equipot.properties.report import copper_property_table
    from equipot.train.report import write_json

    model = EquipotCalculator(model_path, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ASE's optimiser chatter on cell filters
        rows, text = copper_property_table(model, EMT())
    return text, {"properties": write_json(Path(out_dir) / "properties.json", {"rows": rows})}


def report(result: DemoResult) -> str:
    """The text the demo prints: error table, timings and where the files are."""
    from equipot.train.report import error_table

    lines = [error_table(result.metrics, "Test-set errors against EMT (held-out structures):")]
    lines.append("")
    if result.properties:
        lines += ["fcc Cu properties, model vs EMT (each at its own lattice constant):"]
        lines += [result.properties, ""]
    lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items()))
    lines.append("files:")
    for name, path in result.files.items():
        lines.append(f"  {name:<15} {path}")
    return "\n".join(lines)


def run_demo(
    out_dir: str | Path = "equipot-demo",
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    """Generate EMT copper data, train a small model, evaluate it on held-out frames and
    compare its fcc Cu properties with EMT's."""
    settings = QUICK if quick else FULL
    result = DemoResult(out_dir=Path(out_dir))
    result.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result.files.update(generate(result.out_dir, settings, seed))
    result.timings["generate"] = time.perf_counter() - start
    start = time.perf_counter()
    result.files.update(
        train_model(result.files["train_data"], result.out_dir, settings, seed, progress)
    )
    result.timings["train"] = time.perf_counter() - start
    start = time.perf_counter()
    result.metrics, files = evaluate_model(
        result.files["model"], result.files["test_data"], result.out_dir
    )
    result.files.update(files)
    result.timings["evaluate"] = time.perf_counter() - start
    start = time.perf_counter()
    result.properties, files = compare_properties(result.files["model"], result.out_dir)
    result.files.update(files)
    result.timings["properties"] = time.perf_counter() - start
    summary = {
        "metrics": result.metrics,
        "timings_s": result.timings,
        "files": {k: str(v) for k, v in result.files.items()},
    }
    result.files["summary"] = result.out_dir / "summary.json"
    result.files["summary"].write_text(json.dumps(summary, indent=1))
    return result
