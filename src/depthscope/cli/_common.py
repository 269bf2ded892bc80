"""What every ``depthscope`` command shares: exit statuses, argument types, building the model asked for."""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

import torch

# Exit statuses: argparse uses 2 for usage errors; we use 1 for a measurement that could not be made.
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
PROBE_BATCH = 8
# Batch of models from outside the zoo: real networks at 224 px cost far more per example.
SOURCE_BATCH = 1
# Largest seeds: the probe takes any torch generator seed (unsigned 64-bit); ledger experiments
# derive sub-seeds such as 1000 * seed + i, which 32-bit seeds keep far inside torch's 64 bits.
PROBE_SEED_MAX = 2**64 - 1


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


def _model_kwargs(args: argparse.Namespace) -> dict:
    kw = {}
    for name in ("depth", "width"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    kw.update(args.set or [])
    return kw


def _build_source(args: argparse.Namespace):
    """The model and input that ``depthscope probe`` was asked for: a `depthscope.sources.Built`.

    The sources' own errors (unknown names, bad shapes, missing libraries) are usage errors."""
    import depthscope as ds
    from depthscope import sources

    kw = dict(args.set or [])
    batch = args.batch if args.batch is not None else SOURCE_BATCH
    if args.hf:
        return sources.from_hf(args.hf, batch=batch, seq=args.seq, seed=args.seed, **kw)
    if args.torchvision:
        return sources.from_torchvision(args.torchvision, args.input, batch=batch, seed=args.seed, **kw)
    if args.timm:
        return sources.from_timm(args.timm, args.input, batch=batch, seed=args.seed, **kw)
    if ":" in args.model:
        if os.getcwd() not in sys.path:  # like `python -m`: the user's own package in the current folder
            sys.path.insert(0, os.getcwd())
        return sources.from_factory(args.model, args.input, input_file=args.input_file, seed=args.seed, **kw)
    kw = _model_kwargs(args)
    torch.manual_seed(args.seed)
    try:
        model = ds.create_model(args.model, **kw)
    except ds.DepthscopeError:
        raise
    except (TypeError, ValueError) as err:  # the model's own argument checks, or none: say which call failed
        settings = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        raise ds.DepthscopeError(f"cannot build {args.model}({settings}): {err}") from err
    model.eval()
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
