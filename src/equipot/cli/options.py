"""Options that would do nothing are errors: a user who passes ``--pressure 2`` to an NVT run
believes the system is compressed. Such options default to ``None`` ("not given"); each
subcommand states where they apply, and :func:`reject_unused` refuses them elsewhere, saying
what they apply to. :func:`with_defaults` then fills in the real defaults."""

from __future__ import annotations

import argparse


def reject_unused(args: argparse.Namespace, rules: dict[str, tuple]) -> None:
    """``rules``: option dest → (applies here?, what it applies to[, the flag if it is not
    ``--dest``])."""
    for dest, (applies, scope, *flag) in rules.items():
        value = getattr(args, dest, None)
        if value is not None and value is not False and not applies:
            flag = flag[0] if flag else "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} applies to {scope}; here it would do nothing: leave it out")


def with_defaults(args: argparse.Namespace, defaults: dict) -> argparse.Namespace:
    """Fill options left out (None) with their defaults."""
    for dest, value in defaults.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
    return args


def finite_difference_delta(args: argparse.Namespace, default: float) -> float:
    """``--delta`` (Å) of a Hessian command: refused unless the Hessian comes from finite
    differences (``--method finite-difference``, or ``--calculator``), since a model's Hessian
    is exact; ``default`` when left out."""
    finite = args.method == "finite-difference" or (args.method == "auto" and args.calculator)
    reject_unused(
        args,
        {
            "delta": (
                finite,
                "finite differences (--method finite-difference, or "
                "--calculator); a model's Hessian is exact",
            )
        },
    )
    return with_defaults(args, {"delta": default}).delta
