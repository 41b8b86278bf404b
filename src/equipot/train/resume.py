"""What ``--resume`` / ``--extend`` may change, and the refusal that lists what they may not.

A resumed run must be the same run: the same data (files and their content), split, model,
loss, optimiser and seed. Only how it is watched (progress bar, plots, checkpoint frequency,
threads, cache location) and the uncertainty fit done after training may change.
``--extend`` also lets the budget grow (``optim.max_epochs``, ``optim.max_time_min``,
``optim.early_stop_patience``): the stored plan is then replaced by a longer one
(:meth:`equipot.train.plan.TrainingPlan.extended`).
``--allow-config-change`` accepts any difference (listed as a warning).
"""

from __future__ import annotations

import json

FREE = {
    "output.dir",
    "output.progress",
    "output.plot",
    "output.checkpoint_minutes",
    "output.checkpoint_steps",
    "num_threads",
    "data.in_memory",
    "data.cache_dir",
}
FREE_SECTIONS = ("uncertainty.",)  # fitted after training: may change on resume
BUDGET = {"optim.max_epochs", "optim.max_time_min", "optim.early_stop_patience"}


class ResumeRefused(ValueError):
    """The new configuration would not continue the checkpoint's run."""


def flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def differences(old: dict, new: dict) -> dict[str, tuple]:
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _describe(changes: dict[str, tuple]) -> str:
    return "; ".join(f"{k}: {json.dumps(v[0])} → {json.dumps(v[1])}" for k, v in changes.items())


def check_resume(
    checkpoint: dict,
    config_json: dict,
    data_hashes: dict[str, str],
    *,
    extend: bool,
    allow_changes: bool,
) -> list[str]:
    """Raise :class:`ResumeRefused` for changes the flags do not allow; return warnings."""
    changes = differences(json.loads(checkpoint["train_config"]), config_json)
    old_hashes = checkpoint.get("data") or {}
    for part, digest in data_hashes.items():
        if part in old_hashes and old_hashes[part] != digest:
            changes[f"data.{part} (file content, SHA-256)"] = (old_hashes[part][:12], digest[:12])
    budget = {k: v for k, v in changes.items() if k in BUDGET}
    rest = {
        k: v
        for k, v in changes.items()
        if k not in FREE and k not in BUDGET and not k.startswith(FREE_SECTIONS)
    }
    if budget and not extend and not allow_changes:
        raise ResumeRefused(
            f"--resume continues the stored training plan; the budget changed ({_describe(budget)})"
            ": to train longer, pass --extend (with the new optim.max_epochs / max_time_min)"
        )
    if rest and not allow_changes:
        raise ResumeRefused(
            f"refusing to resume: the config differs from the checkpoint's in {_describe(rest)}. "
            "Resuming with other data, split, model, loss or optimiser settings would not "
            "continue the same run: start a new run (another output.dir), or pass "
            "--allow-config-change to resume anyway"
        )
    return [f"resuming with changed settings: {_describe(rest)}"] if rest else []
