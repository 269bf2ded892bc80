"""Exceptions raised by depthscope. Every one says what was wrong and where."""

from __future__ import annotations


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
