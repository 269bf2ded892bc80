"""One step x_{k+1} = f_k(x_k) of a chain, and how a step is run with errors that name it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from depthscope._errors import ChainError, InputError

StepFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Step:
    """One step of a chain.

    Attributes:
        name: a label shown in reports (``"blocks.3"``, ``"t=17"``).
        fn: the map ``x_k -> x_{k+1}``; takes and returns one tensor of shape ``(B, *S_k)``;
            the batch dimension B is never mixed (examples are independent).
        module: the ``nn.Module`` behind ``fn`` when there is one (used to check train/eval mode
            and to count parameters); ``None`` for plain callables.
        jvp: optional analytic tangent map ``jvp(x, V) -> (f(x), J V)`` with ``V: (m, B, *S_k)``,
            for small maps iterated 10^5 times where autodiff overhead dominates (used by
            `depthscope.lyapunov`; must agree with autodiff, which tests check).
    """

    name: str
    fn: StepFn
    module: nn.Module | None = field(default=None, compare=False)
    jvp: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = field(
        default=None, compare=False
    )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def as_step(item: object, index: int) -> Step:
    """``item`` as a `Step`: a `Step` as is, a ``(name, callable)`` pair, or a callable named by its type."""
    if isinstance(item, Step):
        return item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and callable(item[1]):
        module = item[1] if isinstance(item[1], nn.Module) else None
        return Step(item[0], item[1], module)
    if callable(item):
        module = item if isinstance(item, nn.Module) else None
        name = type(item).__name__ if module is not None else getattr(item, "__name__", "step")
        return Step(f"{index}:{name}", item, module)
    raise ChainError(
        f"chain item {index} is a {type(item).__name__}; expected a callable x -> x, "
        "a (name, callable) pair or a depthscope.Step"
    )


def run_step(step: Step, k: int, x: torch.Tensor) -> torch.Tensor:
    """Apply one step, turning a failure into an error that names the step and the shape."""
    try:
        y = step.fn(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise InputError(
            f"step {k} ({step.name!r}) failed on an input of shape {tuple(x.shape)} and dtype {x.dtype}: {err}"
        ) from err
    if not isinstance(y, torch.Tensor):
        raise ChainError(f"step {k} ({step.name!r}) returned a {type(y).__name__}; a step must return one tensor")
    if y.ndim == 0 or (x.ndim > 0 and y.shape[0] != x.shape[0]):
        raise ChainError(
            f"step {k} ({step.name!r}) changed the batch dimension: {tuple(x.shape)} -> "
            f"{tuple(y.shape)}; steps map (B, ...) to (B, ...)"
        )
    return y
