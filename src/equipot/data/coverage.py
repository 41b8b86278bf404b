"""Which frames carry forces and stresses: refuse a loss term that no frame can feed, report
frames that lack a quantity others have.

A force loss with weight 100 on a file whose forces sit under another key (MACE's
``REF_forces``, or ``force``) would otherwise train on energies alone without a word. The
error names the file, the key looked for and the keys the file does have.
"""

from __future__ import annotations

import numpy as np

from equipot.data.cache import cache_keys
from equipot.data.dataset import GraphDataset
from equipot.data.readers import DataSource

QUANTITIES = ("forces", "stress")


class MissingQuantity(ValueError):
    """A loss term has a positive weight but no frame of a file carries its quantity."""


def frame_coverage(dataset: GraphDataset) -> dict[str, int]:
    """{"frames": n, "forces": frames with forces, "stress": frames with stress}."""
    meta = dataset.frame_arrays(["has_forces", "has_stress"])
    return {
        "frames": len(dataset),
        "forces": int(np.count_nonzero(meta["has_forces"])),
        "stress": int(np.count_nonzero(meta["has_stress"])),
    }


def keys_looked_for(source: DataSource, quantity: str) -> str:
    if quantity == "stress":
        return f"{source.stress_key!r} (or a virial under {source.virial_key!r})"
    return repr(source.forces_key)


def missing_message(source: DataSource, quantity: str, dataset: GraphDataset) -> str:
    keys = cache_keys(dataset.path)
    return (
        f"no {quantity} in {source.path}: no frame has the key {keys_looked_for(source, quantity)}"
        f" (per-atom keys in the file: {keys['per_atom'] or 'none'}; per-frame keys: "
        f"{keys['per_frame'] or 'none'})"
    )


def check_coverage(
    parts: dict[str, tuple[GraphDataset, DataSource, str]], weights: dict[str, float]
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per part ("train", "valid", "test": (dataset, source, its config key, e.g.
    "data.train")): frame counts; raise :class:`MissingQuantity` for a quantity with a
    positive loss weight that a whole file lacks. Returns the counts and report lines for
    partial coverage."""
    counts, report = {}, []
    for name, (dataset, source, key) in parts.items():
        c = counts[name] = frame_coverage(dataset)
        for quantity in QUANTITIES:
            have, total = c[quantity], c["frames"]
            if weights.get(quantity, 0.0) > 0 and have == 0:
                whole = frame_coverage(GraphDataset(dataset.path, in_memory=True))
                if whole[quantity] == 0:
                    raise MissingQuantity(
                        f"{missing_message(source, quantity, dataset)}; the {quantity} loss "
                        f"has weight {weights[quantity]:g}. Set {key}.{quantity}_key to "
                        f"the file's key, or loss.{quantity}_weight: 0 (and in stage_two) to "
                        f"train without {quantity}"
                    )
            if 0 < have < total or (have == 0 and weights.get(quantity, 0.0) > 0):
                report.append(
                    f"{name} ({source.path}): {have} of {total} frames have {quantity}; the "
                    f"other {total - have} add no {quantity} term to the loss or the errors"
                )
    return counts, report
