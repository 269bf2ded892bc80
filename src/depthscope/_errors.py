"""Exceptions raised by depthscope, and the argument checks that raise them. Every one says what
was wrong and where."""

from __future__ import annotations

import numbers

# Seeds feed torch.Generator.manual_seed, which takes an unsigned 64-bit integer.
SEED_LIMIT = 2**64


class DepthscopeError(Exception):
    """Base class of every error depthscope raises on purpose."""


class ChainError(DepthscopeError):
    """A model or list of callables could not be turned into a chain of steps."""


class NoBlocksError(ChainError):
    """No block sequence could be found in a module."""


class InputError(DepthscopeError, ValueError):
    """The input does not fit the model: wrong shape, wrong dtype, nothing differentiable."""


class NonFiniteError(DepthscopeError, FloatingPointError):
    """A NaN or Inf appeared; ``step`` and ``step_name`` say where it first appeared."""

    def __init__(self, message: str, step: int, step_name: str):
        super().__init__(message)
        self.step = step
        self.step_name = step_name


class UnknownModelError(DepthscopeError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


def check_count(name: str, value: object, least: int) -> int:
    """``value`` as an int, refusing anything but an integer >= ``least`` (2.5, True, "3", None).

    Raises:
        InputError: says which argument and what it was.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer >= {least}, got {value!r} ({type(value).__name__})")
    if value < least:
        raise InputError(f"{name} must be >= {least}, got {value}")
    return int(value)


def check_seed(seed: object) -> int:
    """``seed`` as an int in [0, 2**64), the range of a torch generator's seed.

    Raises:
        InputError: not an integer, or out of range.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed < SEED_LIMIT:
        raise InputError(f"seed must lie in [0, 2**64), got {seed}")
    return int(seed)
