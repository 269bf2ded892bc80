"""A user's own model: a factory path ``module:callable`` and an input shape or tensor file."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from depthscope._errors import InputError
from depthscope.sources._built import Built, as_shape, load_input, random_input, seeded_build


def resolve_factory(path: str):
    """``"pkg.module:attr.attr"`` -> the callable it names; `InputError` saying which part is wrong."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"a factory path is module:callable, e.g. my_pkg.models:build; got {path!r}")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(f"cannot import {module_name!r} for factory {path!r}: {err}") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"factory {path!r}: {obj.__name__ if hasattr(obj, '__name__') else obj} has no {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"factory {path!r} is a {type(obj).__name__}, not callable")
    return obj


def from_factory(
    path: str,
    input_shape: tuple[int, ...] | str | None = None,
    *,
    input_file: str | Path | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> Built:
    """Call the factory ``path`` (``"module:callable"``) with ``kwargs`` and pair it with an input.

    Args:
        path: where the factory lives; the module must be importable (on ``sys.path``).
        input_shape: ``(B, *S_0)`` (or ``"1,3,224,224"``) of a standard normal float32 input.
        input_file: instead of a shape, a tensor saved with ``torch.save``.
        seed: seeds the weights (the factory runs under ``torch.manual_seed(seed)``) and the input.
        kwargs: keyword arguments of the factory.
    """
    if (input_shape is None) == (input_file is None):
        raise InputError(
            "give the factory's input as a shape (--input 1,3,224,224) or a file (--input-file), one of them"
        )
    if input_file is None:  # a bad shape fails before the build
        shape = as_shape(input_shape)
    factory = resolve_factory(path)
    settings = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    model = seeded_build(seed, lambda: factory(**kwargs), f"{path}({settings})")
    if input_file is not None:
        x = load_input(input_file)
    else:
        x = random_input(shape, seed)
    return Built(model, x, path)
