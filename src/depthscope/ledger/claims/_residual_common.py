"""Helpers shared by claims R4-R12 (seed 000): float64 zoo models and blocks, Jacobians, eigenvalue matching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from depthscope.chain import Chain
from depthscope.estimators import LinearizedChain
from depthscope.zoo import create_model


def _float64_model(name: str, seed: int, **kwargs: Any) -> nn.Module:
    """The zoo model ``name`` in float64 with weights drawn from ``seed``: equal seeds give equal
    weights, so a sweep over alpha or a branch scale changes nothing else."""
    torch.manual_seed(seed)
    return create_model(name, **kwargs).double()


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks of a zoo MLP as ``(name, module)`` chain steps, its stem and head left out."""
    return model.chain_steps(None)[1:-1]


def _matched_distance(a: np.ndarray, b: np.ndarray) -> float:
    """max_i |a_i - b_pi(i)| under the pairing pi that minimises the total distance (Hungarian
    algorithm); a, b: (n,) complex eigenvalues. Sorting is not enough: complex conjugate pairs and
    clusters reorder under rounding."""
    cost = np.abs(a[:, None] - b[None, :])
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].max())


def _per_example_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Exact Jacobians of a batch-first map, one per example: x: (B, n) -> (B, n_out, n).

    The probe's own explicit route: a one-step chain, its Jacobian built from the narrower side.
    """
    return LinearizedChain(Chain([fn]), x).explicit(0).detach()


class _PostNormResidual(nn.Module):
    """y = LN(x + alpha F(x)) around a zoo `ResidualBlock` (LayerNorm without affine, after the sum).

    The counterexample of R9 and R11: the block still has a branch F and a knob alpha, but the
    normalisation after the sum puts its Jacobian J_LN in front of I + alpha J_F.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    @property
    def alpha(self) -> torch.Tensor:
        return self.block.alpha

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of the wrapped block; x: (B, width) -> (B, width)."""
        return self.block.branch(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(self.block(x), x.shape[-1:])


# Which block the R9/R11 experiments put around each zoo ResidualBlock.
_BLOCK_KINDS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "residual": lambda block: block,  # y = x + alpha F(x), the claim's block
    "post_ln": _PostNormResidual,  # y = LN(x + alpha F(x))
}
