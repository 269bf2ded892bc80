"""Skip density (claim J5): the expected gradient norm of a linear net whose skips are present with probability s.

The model (Veit et al. 2016's ensemble view; Huang et al. 2016's stochastic depth at test time):
x_{k+1} = (W_k + b_k I) x_k, W_k with i.i.d. N(0, sigma^2 / n) entries, b_k ~ Bernoulli(s), all
independent. Backward, E ||g_0||^2 / ||g_L||^2 = (sigma^2 + s)^L at every width (derivation in the
ledger's `depthscope.ledger.claims.j5_nas`, whose formula `skip_density` calls): the expected
gradient norm is a predictable function of the skip density, equal to 1 at every depth for
s = 1 - sigma^2. `RandomSkipNet` is one draw of that model as a zoo-style module, so `rank` can
score random-skip candidates by the prediction over all draws rather than by the one drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from depthscope._errors import InputError, check_count
from depthscope.chain import ChainModule
from depthscope.ledger.claims.j5_nas import j5_expected_sq_norm


def _check(s: float, sigma2: float) -> None:
    if not (0 <= s <= 1):
        raise InputError(f"skip probability s must lie in [0, 1], got {s!r}")
    if not (sigma2 >= 0 and math.isfinite(sigma2)):
        raise InputError(f"sigma2 must be a finite number >= 0, got {sigma2!r}")


def skip_density(s: float, depth: int, sigma2: float = 0.5) -> float:
    """E ||g_0||^2 / ||g_L||^2 = (sigma^2 + s)^L for the random-skip linear net of ``depth`` layers.

    Args:
        s: skip probability in [0, 1].
        depth: L >= 1.
        sigma2: the weights' variance times the width (sigma_w^2), >= 0.

    Returns:
        the expected squared gradient-norm ratio, input over output (1 = preserved on average).
    """
    depth = check_count("depth", depth, 1)
    _check(s, sigma2)
    return float(j5_expected_sq_norm(sigma2, s, depth))


def balanced_skip_density(sigma2: float) -> float | None:
    """The s at which the expected gradient norm is preserved at every depth, 1 - sigma^2 (None if
    sigma^2 > 1: no skip density preserves it)."""
    _check(0.0, sigma2)
    return 1.0 - sigma2 if sigma2 <= 1 else None


class SkipLinear(nn.Module):
    """x -> W x + b x, b in {0, 1} fixed at construction; x: (B, n)."""

    def __init__(self, width: int, sigma2: float, skip: bool, generator: torch.Generator):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, width, generator=generator) * math.sqrt(sigma2 / width))
        self.register_buffer("skip", torch.tensor(1.0 if skip else 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.skip * x


class RandomSkipNet(ChainModule):
    """One draw of the random-skip linear net: ``depth`` `SkipLinear` steps, skips drawn with
    probability ``s`` (seeded). x: (B, width) -> (B, width). Its attributes ``s``, ``sigma2`` and
    ``depth`` let `rank` use the J5 prediction."""

    def __init__(self, depth: int, width: int, s: float, sigma2: float = 0.5, seed: int = 0):
        super().__init__()
        self.depth = check_count("depth", depth, 1)
        self.width = check_count("width", width, 1)
        _check(s, sigma2)
        self.s, self.sigma2 = float(s), float(sigma2)
        g = torch.Generator().manual_seed(seed)
        skips = (torch.rand(depth, generator=g) < s).tolist()
        self.blocks = nn.ModuleList(SkipLinear(width, sigma2, b, g) for b in skips)

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [(f"layers.{i}", b) for i, b in enumerate(self.blocks)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.width, generator=generator)

    def expected_sq_gain(self) -> float:
        """(sigma^2 + s)^L: `skip_density` of this net's settings (over all draws of masks and weights)."""
        return skip_density(self.s, self.depth, self.sigma2)
