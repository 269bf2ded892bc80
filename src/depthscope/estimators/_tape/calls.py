"""Reading a torch call's arguments the way the function itself does: by position or keyword."""

from __future__ import annotations

from typing import Any


def arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    """Argument ``name`` of a call, passed at position ``i`` or by keyword (else ``default``)."""
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def int_list(value: Any, d: int) -> list[int]:
    """A convolution's ``stride``-like argument (an int, or one or ``d`` ints) as ``d`` ints."""
    if isinstance(value, int):
        return [value] * d
    out = list(value)
    return out * d if len(out) == 1 else out


def name(func) -> str:
    """A torch function's name for messages."""
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or str(func)
