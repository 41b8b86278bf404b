"""``equipot evaluate MODEL DATA [--out results.json] [--plot parity.png]``."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="errors of a model on a data file (table, JSON, parity plot)",
        description="MAE / RMSE of energies (total and per atom), forces (per component and "
        "per element) and stresses of MODEL on DATA (extxyz, rMD17 npz or ASE db).",
    )
    p.add_argument("model", help="model file (.eqp)")
    p.add_argument("data", help="data file")
    p.add_argument("--out", help="write the metrics to this JSON file")
    p.add_argument("--plot", help="write a parity plot to this PNG file")
    p.add_argument("--format", default="auto", choices=["auto", "extxyz", "rmd17", "ase-db"])
    p.add_argument("--energy-key", default="energy")
    p.add_argument("--forces-key", default="forces")
    p.add_argument("--stress-key", default="stress")
    p.add_argument("--energy-unit", help="unit of the file's energies (default: the format's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument(
        "--group-by",
        action="append",
        default=[],
        metavar="KEY",
        help="errors per group and the worst group: config_type, element or any per-frame "
        "info key (repeatable)",
    )
    p.add_argument("--head", help="head of a multi-head model file (default: its default)")


def run(args: argparse.Namespace) -> int:
    from equipot.data.readers import DataSource
    from equipot.model.builder import resolve_dtype
    from equipot.model.io import load_model
    from equipot.train.evaluate import evaluate_file
    from equipot.train.report import error_table, parity_plot, write_json

    source = DataSource(
        path=args.data,
        format=args.format,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
        stress_key=args.stress_key,
        energy_unit=args.energy_unit,
    )
    model = load_model(args.model, head=args.head)
    groups = None
    if args.group_by:
        from equipot.train.groups import evaluate_groups, group_table

        metrics, arrays, groups = evaluate_groups(
            model,
            source,
            args.group_by,
            batch_size=args.batch_size,
            dtype=resolve_dtype(args.dtype),
        )
    else:
        metrics, arrays = evaluate_file(
            model, source, batch_size=args.batch_size, dtype=resolve_dtype(args.dtype)
        )
    print(error_table(metrics, f"{args.model} on {args.data}"))
    for note in metrics["notes"]:
        print(note)
    if groups:
        print(group_table(groups))
    if args.out:
        payload = {"model": args.model, "data": args.data, "metrics": metrics}
        if groups:
            payload["groups"] = groups
        write_json(args.out, payload)
        print(f"metrics:     {args.out}")
    if args.plot:
        parity_plot(args.plot, arrays, f"{args.model} on {args.data}")
        print(f"parity plot: {args.plot}")
    return 0
