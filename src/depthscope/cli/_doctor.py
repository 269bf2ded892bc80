"""``depthscope doctor``: diagnose, prescribe, apply to a copy, compare."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli._common import (
    _add_model_options,
    _build_source,
    _check_report_path,
    _check_source_args,
    _fit_digits,
    _positive,
)


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from depthscope import doctor
    from depthscope._io import atomic_write_text
    from depthscope.render import render_diagnosis, render_verification

    if args.train_steps is not None and args.apply is None:
        args.parser.error("--train-steps needs --apply (both models are trained: the original and the treated one)")
    _check_source_args(args)
    if args.json:
        _check_report_path(args.json)
    if args.apply not in (None, "best"):
        doctor.get_treatment(args.apply)  # an unknown name fails now, listing the names
    if args.train_steps:
        _fit_digits(args)  # both models are trained on digits
    built = _build_source(args)
    model, x = built.model, built.input
    dx = doctor.diagnose(model, x, seed=args.seed)
    if not args.quiet:
        render_diagnosis(dx, title=f"depthscope doctor {built.label}")
    out: dict = {"model": built.label, "diagnosis": dx.to_dict()}
    if args.apply is not None and dx.healthy:
        if not args.quiet:
            print("healthy: nothing to apply")
    elif args.apply is not None:
        if args.apply == "best":
            chosen, treated, _ = dx.best(model)
            name = chosen.name
        else:
            name = doctor.get_treatment(args.apply).name
            treated = dx.apply(model, name)
        task = doctor.digits_task(steps=args.train_steps, seed=args.seed) if args.train_steps else None
        result = doctor.verify(model, treated, x, train=task, seed=args.seed)
        if not args.quiet:
            render_verification(result, title=f"depthscope doctor: {name} applied")
        out.update(applied=name, verification=result.to_dict())
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(out, indent=1, allow_nan=False))
        if not args.quiet:
            print(f"diagnosis written to {args.json}")
    return 0


def add_doctor_parser(sub) -> None:
    """`depthscope doctor`."""
    d = sub.add_parser(
        "doctor",
        help="diagnose a model, prescribe published fixes, apply one and compare",
        description="Probe a model, list what is wrong (findings, with the numbers) and the published "
        "treatments that fit (ranked); with --apply, treat a copy and show before and after.",
    )
    d.add_argument("model", help="registered model name (see `depthscope models`), or module:callable")
    _add_model_options(d)
    d.add_argument(
        "--apply",
        metavar="NAME",
        help="'best' (the first prescription whose re-probe keeps its promise) or a treatment's name",
    )
    d.add_argument(
        "--train-steps", type=_positive, metavar="N", help="with --apply: train both models N steps on digits"
    )
    d.add_argument("--json", metavar="PATH", help="also write the diagnosis (and comparison) as JSON")
    d.add_argument("--quiet", action="store_true", help="print nothing (with --json)")
    d.set_defaults(func=cmd_doctor, parser=d)
