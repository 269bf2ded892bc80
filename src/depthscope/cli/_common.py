"""What every ``depthscope`` command shares: exit statuses, argument types and options, building the model asked for."""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

import torch

from depthscope._errors import SEED_LIMIT

# Exit statuses: argparse uses 2 for usage errors; we use 1 for a measurement that could not be made.
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
PROBE_BATCH = 8
# Batch of models from outside the zoo: real networks at 224 px cost far more per example.
SOURCE_BATCH = 1
# Largest seed: the probe takes any torch generator seed (unsigned 64-bit).
PROBE_SEED_MAX = SEED_LIMIT - 1
# The sources `depthscope probe` offers besides a registered name and module:callable; the other
# commands set them to None (`_add_model_options`).
OTHER_SOURCES = ("hf", "torchvision", "timm")
# scikit-learn's digits, which --train-steps trains on: 8 x 8 images, 10 classes.
DIGITS_FEATURES, DIGITS_CLASSES = 64, 10


def _bounds(low: int, high: int | None) -> str:
    return f"from {low} to {high}" if high is not None else f"at least {low}"


def _int_at_least(low: int, high: int | None = None):
    """An argparse ``type``: an integer in [low, high]; anything else is a usage error naming the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            if text.strip().lstrip("+-").isdigit():  # more digits than Python converts (4300)
                digits = len(text.strip())
                raise argparse.ArgumentTypeError(f"must be {_bounds(low, high)}, got a {digits}-digit number") from None
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_bounds(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)
_probe_seed = _int_at_least(0, PROBE_SEED_MAX)


def _key_value(text: str) -> tuple[str, object]:
    """A --set item: KEY=VALUE, the value read by `_value`."""
    key, sep, val = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _value(val)


def _value(text: str):
    """A --set value: Python literal if it parses as one (3, 0.5, True, 'x'), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):  # the parser gives up on deep nesting
        return text


def _add_seed_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_probe_seed, default=0, help="0 to 2**64 - 1 (default 0)")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The options of a command that takes a registered name or module:callable only (doctor, grow,
    prune); the other sources of `depthscope probe` are set to None for `_build_source`."""
    p.add_argument("--depth", type=_positive, help="number of blocks")
    p.add_argument("--width", type=_positive, help="width of the blocks")
    p.add_argument(
        "--set", action="append", type=_key_value, metavar="KEY=VALUE", help="any other model argument, repeatable"
    )
    p.add_argument("--batch", type=_positive, help=f"examples (default {PROBE_BATCH} for registered models)")
    p.add_argument("--input", metavar="SHAPE", help="input shape for module:callable, batch first")
    _add_seed_option(p)
    p.set_defaults(input_file=None, seq=None, **dict.fromkeys(OTHER_SOURCES))


def _either(names: list[str], conjunction: str) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def _check_source_args(args: argparse.Namespace, others: tuple[str, ...] = ()) -> None:
    """Usage errors of ``args.parser`` that argparse cannot see: exactly one model, and options only
    where its source takes them. ``others``: the sources of `OTHER_SOURCES` that the command offers."""
    parser = args.parser
    chosen = [f"--{n}" for n in others if getattr(args, n)]
    if args.model:
        chosen.append(args.model)
    if len(chosen) != 1:
        which = ", ".join(chosen) if chosen else "none"
        kinds = _either(["a registered name", "module:callable", *(f"--{n}" for n in others)], "or")
        parser.error(f"give one model: {kinds} (got {which})")
    zoo = bool(args.model) and ":" not in args.model
    factory = bool(args.model) and ":" in args.model
    if not zoo and (args.depth is not None or args.width is not None):
        parser.error("--depth and --width apply to registered models; use --set for the others")
    if args.input is not None and (zoo or args.hf):
        takers = _either(["module:callable", *(f"--{n}" for n in others if n != "hf")], "and")
        parser.error(f"--input applies to {takers}")
    if args.batch is not None and (factory or args.input is not None):
        parser.error("--batch does not apply with --input or --input-file: the batch is the input's first size")
    if args.input_file is not None and not factory:
        parser.error("--input-file applies to module:callable")
    if args.seq is not None and not args.hf:
        parser.error("--seq applies to --hf")


def _fit_digits(args: argparse.Namespace) -> None:
    """With --train-steps, a registered model that takes ``in_dim`` and ``out_dim`` is built for
    digits (64 inputs, 10 classes) unless --set says otherwise."""
    import inspect

    import depthscope as ds

    if ":" in args.model or args.model not in ds.list_models():
        return
    params = inspect.signature(ds.model_spec(args.model).factory).parameters
    given = {k for k, _ in args.set or []}
    for key, value in (("in_dim", DIGITS_FEATURES), ("out_dim", DIGITS_CLASSES)):
        if key in params and key not in given:
            args.set = [*(args.set or []), (key, value)]


def _model_kwargs(args: argparse.Namespace) -> dict:
    kw = {}
    for name in ("depth", "width"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    kw.update(args.set or [])
    return kw


def _create_model(name: str, kw: dict, seed: int, label: str | None = None):
    """``depthscope.create_model(name, **kw)`` under ``torch.manual_seed(seed)``, in eval mode.

    The model's own argument checks (or none: a TypeError) become a `DepthscopeError` saying which
    call failed; ``label`` names it instead of the call."""
    import depthscope as ds

    torch.manual_seed(seed)
    try:
        return ds.create_model(name, **kw).eval()
    except ds.DepthscopeError:
        raise
    except (TypeError, ValueError) as err:
        settings = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        raise ds.DepthscopeError(f"cannot build {label or f'{name}({settings})'}: {err}") from err


def _build_source(args: argparse.Namespace):
    """The model and input that the command was asked for: a `depthscope.sources.Built`.

    The sources' own errors (unknown names, bad shapes, missing libraries) are usage errors of
    ``args.parser``; a misspelt registered name keeps its exit status 1 and suggestions."""
    import depthscope as ds
    from depthscope import sources

    try:
        return _build(args)
    except (sources.MissingLibraryError, ds.UnknownModelError, ds.InputError) as err:
        if args.model and ":" not in args.model and isinstance(err, ds.UnknownModelError):
            raise
        args.parser.error(str(err))


def _build(args: argparse.Namespace):
    from depthscope import sources

    kw = dict(args.set or [])
    batch = args.batch if args.batch is not None else SOURCE_BATCH
    if args.hf:
        seq = args.seq if args.seq is not None else sources.DEFAULT_SEQ
        return sources.from_hf(args.hf, batch=batch, seq=seq, seed=args.seed, **kw)
    if args.torchvision:
        return sources.from_torchvision(args.torchvision, args.input, batch=batch, seed=args.seed, **kw)
    if args.timm:
        return sources.from_timm(args.timm, args.input, batch=batch, seed=args.seed, **kw)
    if ":" in args.model:
        if os.getcwd() not in sys.path:  # like `python -m`: the user's own package in the current folder
            sys.path.insert(0, os.getcwd())
        return sources.from_factory(args.model, args.input, input_file=args.input_file, seed=args.seed, **kw)
    model = _create_model(args.model, _model_kwargs(args), args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    batch = args.batch if args.batch is not None else PROBE_BATCH
    return sources.Built(model, model.example_input(batch, gen), args.model)


def _check_report_path(path: str) -> None:
    """Fail now, not after probing, if a report cannot be written at ``path``."""

    from depthscope._errors import DepthscopeError
    from depthscope._io import check_writable_dir

    target = Path(path)
    if target.is_dir():
        raise DepthscopeError(f"cannot write {target}: it is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise DepthscopeError(f"cannot write {target}: directory {parent} does not exist")
    check_writable_dir(parent)
