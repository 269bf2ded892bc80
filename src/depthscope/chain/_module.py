"""`ChainModule`: the base class of models that state their own chain of steps."""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import nn


class ChainModule(nn.Module, abc.ABC):
    """An ``nn.Module`` whose forward pass is an explicit chain of steps.

    Every model of depthscope's zoo derives from it. A subclass implements:

    1. ``chain_steps(x)``: the ``(name, callable)`` steps whose composition is ``forward(x)``.
       Most models ignore ``x``; models whose steps depend on the input (an RNN consumes
       ``x[:, t]`` at step t) close over it. The first step is the stem, the last the head.
    2. ``example_input(batch, generator)``: a valid input batch, for probes and tests.

    ``forward`` composes the steps, so model and chain cannot disagree.
    """

    @abc.abstractmethod
    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        """The steps of the chain, stem first and head last."""

    @abc.abstractmethod
    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """A valid input batch of ``batch`` examples."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, step in self.chain_steps(x):
            x = step(x)
        return x
