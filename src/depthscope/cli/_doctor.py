"""``depthscope doctor``: diagnose, prescribe, apply to a copy, compare."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli._common import PROBE_BATCH, _build_source, _check_report_path, _key_value, _positive, _probe_seed

# scikit-learn's digits, which --train-steps trains on: 8 x 8 images, 10 classes.
DIGITS_FEATURES, DIGITS_CLASSES = 64, 10


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    import depthscope as ds
    from depthscope import doctor, sources
    from depthscope._io import atomic_write_text
    from depthscope.render import render_diagnosis, render_verification

    parser = args.parser
    if args.train_steps is not None and args.apply is None:
        parser.error("--train-steps needs --apply (both models are trained: the original and the treated one)")
    if args.json:
        _check_report_path(args.json)
    if args.apply not in (None, "best"):
        doctor.get_treatment(args.apply)  # an unknown name fails now, listing the names
    if args.train_steps:
        _fit_digits(args)
    try:
        built = _build_source(args)
    except (sources.MissingLibraryError, ds.UnknownModelError, ds.InputError) as err:
        if ":" not in args.model and isinstance(err, ds.UnknownModelError):
            raise  # a misspelt registered name keeps its exit status 1 and suggestions
        parser.error(str(err))
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


def _fit_digits(args: argparse.Namespace) -> None:
    """With --train-steps, a registered model that takes ``in_dim`` and ``out_dim`` is built for
    digits (64 inputs, 10 classes) unless --set says otherwise: both models are trained on them."""
    import inspect

    import depthscope as ds

    if ":" in args.model or args.model not in ds.list_models():
        return
    params = inspect.signature(ds.model_spec(args.model).factory).parameters
    given = {k for k, _ in args.set or []}
    for key, value in (("in_dim", DIGITS_FEATURES), ("out_dim", DIGITS_CLASSES)):
        if key in params and key not in given:
            args.set = [*(args.set or []), (key, value)]


def add_doctor_parser(sub) -> None:
    """`depthscope doctor`."""
    d = sub.add_parser(
        "doctor",
        help="diagnose a model, prescribe published fixes, apply one and compare",
        description="Probe a model, list what is wrong (findings, with the numbers) and the published "
        "treatments that fit (ranked); with --apply, treat a copy and show before and after.",
    )
    d.add_argument("model", help="registered model name (see `depthscope models`), or module:callable")
    d.add_argument("--depth", type=_positive, help="number of blocks")
    d.add_argument("--width", type=_positive, help="width of the blocks")
    d.add_argument(
        "--set", action="append", type=_key_value, metavar="KEY=VALUE", help="any other model argument, repeatable"
    )
    d.add_argument("--batch", type=_positive, help=f"examples (default {PROBE_BATCH} for registered models)")
    d.add_argument("--input", metavar="SHAPE", help="input shape for module:callable, batch first")
    d.add_argument("--seed", type=_probe_seed, default=0, help="0 to 2**64 - 1 (default 0)")
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
    d.set_defaults(
        func=cmd_doctor, parser=d, hf=None, torchvision=None, timm=None, input_file=None, seq=None, blocks=None
    )
