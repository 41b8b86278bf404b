"""Transfer learning: fine-tuning helpers, multi-head models, distillation, Δ-models.

* :mod:`equipot.train.finetune` — the ``finetune:`` training section (from a model file or a
  shipped model, frozen groups, learning-rate groups, new elements, E0 re-fit, replay).
* :mod:`equipot.transfer.heads` — multi-head model files, head selection at load time.
* :mod:`equipot.transfer.teachers` — reference calculators by name; :func:`label`.
* :mod:`equipot.transfer.delta` — :class:`DeltaCalculator` (baseline + learned correction).
* :func:`finetune` — fine-tune a model on new data in one call (e.g. each round of active
  learning starting from the previous round's model).
"""

from equipot.transfer.delta import DeltaCalculator, delta_labels
from equipot.transfer.teachers import XTBCalculator, label, teacher

__all__ = ["DeltaCalculator", "XTBCalculator", "delta_labels", "finetune", "label", "teacher"]


def finetune(base, train_data, out_dir, *, resume: bool = False, verbose: bool = True, **options):
    """Fine-tune ``base`` (a model file or shipped name) on ``train_data`` and return the
    :class:`~equipot.train.run.TrainResult`.

    ``options`` are config sections merged over sensible fine-tuning defaults, e.g.
    ``optim={"max_epochs": 50, "lr": 0.002}``, ``finetune={"freeze": ["embedding"]}``,
    ``data={"valid_fraction": 0.1}``, ``loss={...}``.
    """
    from equipot.train import load_config, train

    raw = {
        "data": {"train": str(train_data)},
        "optim": {"lr": 0.002, "max_epochs": 100, "scheduler": "cosine"},
        "output": {"dir": str(out_dir)},
        "finetune": {"from": str(base)},
    }
    for section, values in options.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return train(load_config(raw), resume=resume, verbose=verbose)
