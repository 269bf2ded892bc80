"""Plain and residual MLPs: the networks most of the theory is stated for.

plain_mlp:   x_{k+1} = phi(W_k x_k + b_k)
resnet_mlp:  x_{k+1} = x_k + alpha * W2_k phi(W1_k x_k + b_k)      (Jacobian I + alpha J_F, claim R9)
rezero_mlp:  the same block with a learnable alpha initialised to 0 (Bachlechner et al. 2020)
fixup_mlp:   x_{k+1} = x_k + s_k W2_k (phi(W1_k (x_k + a_k) + b_k) + c_k) + d_k, with W2_k = 0 at
             initialisation and W1_k scaled by depth^(-1/2) (Zhang et al. 2019)

ReZero and Fixup blocks are exactly the identity at initialisation (claims R4, J2), at any depth.
All models have a linear stem (in_dim -> width) and a linear head (width -> out_dim), kept as
chain steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from depthscope.chain import ChainModule
from depthscope.zoo._layers import default_sigma_w, init_linear, make_activation
from depthscope.zoo._registry import register_model

# Fixup rescales the non-final layers of each branch by L^(-1/(2m-2)) for m layers per branch
# (Zhang et al. 2019, Sec. 3); every residual branch here has m = 2 layers, giving L^(-1/2).
FIXUP_LAYERS_PER_BRANCH = 2


class PlainBlock(nn.Module):
    """x -> phi(W x + b); x: (B, width)."""

    def __init__(self, width: int, activation: str, slope: float, init: str, sigma_w: float, sigma_b: float):
        super().__init__()
        self.linear = init_linear(nn.Linear(width, width), init, sigma_w, sigma_b)
        self.act = make_activation(activation, slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class ResidualBlock(nn.Module):
    """x -> x + alpha * W2 phi(W1 x + b1); x: (B, width).

    ``alpha`` is a fixed buffer, or an ``nn.Parameter`` when ``learnable_alpha`` (ReZero is the
    learnable case started at alpha = 0). Either way forward is the same expression.
    """

    def __init__(
        self,
        width: int,
        activation: str,
        slope: float,
        init: str,
        sigma_w: float,
        sigma_b: float,
        alpha: float,
        learnable_alpha: bool = False,
    ):
        super().__init__()
        self.fc1 = init_linear(nn.Linear(width, width), init, sigma_w, sigma_b)
        self.act = make_activation(activation, slope)
        # The second layer carries the signal back to the residual stream with unit gain.
        self.fc2 = init_linear(nn.Linear(width, width, bias=False), init, 1.0)
        alpha_t = torch.tensor(float(alpha))
        if learnable_alpha:
            self.alpha = nn.Parameter(alpha_t)
        else:
            self.register_buffer("alpha", alpha_t)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), the residual branch; x: (B, width) -> (B, width)."""
        return self.fc2(self.act(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.branch(x)


class FixupBlock(nn.Module):
    """x -> x + scale * W2 (phi(W1 (x + bias1a) + bias1b) + bias2a) + bias2b; x: (B, width).

    Fixup (Zhang et al. 2019): scalar biases (init 0) before each linear layer and activation, a
    scalar multiplier (init 1) on the branch, the last layer zero and the first scaled by
    ``depth^(-1/2)``. At initialisation the block is exactly the identity.
    """

    def __init__(self, width: int, depth: int, activation: str, slope: float, init: str, sigma_w: float):
        super().__init__()
        # Fixup rule 2: the first layer gets its usual (critical) init times L^(-1/(2m-2)).
        shrink = depth ** (-1.0 / (2 * FIXUP_LAYERS_PER_BRANCH - 2))
        self.fc1 = init_linear(nn.Linear(width, width, bias=False), init, sigma_w * shrink)
        self.act = make_activation(activation, slope)
        # Fixup rule 1: the last layer of every residual branch starts at zero.
        self.fc2 = nn.Linear(width, width, bias=False)
        nn.init.zeros_(self.fc2.weight)
        self.bias1a = nn.Parameter(torch.zeros(()))
        self.bias1b = nn.Parameter(torch.zeros(()))
        self.bias2a = nn.Parameter(torch.zeros(()))
        self.scale = nn.Parameter(torch.ones(()))
        self.bias2b = nn.Parameter(torch.zeros(()))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), the residual branch; x: (B, width) -> (B, width)."""
        h = self.act(self.fc1(x + self.bias1a) + self.bias1b)
        return self.scale * self.fc2(h + self.bias2a) + self.bias2b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class MLP(ChainModule):
    """stem -> blocks -> head, each a chain step. x: (B, in_dim) -> (B, out_dim)."""

    def __init__(self, blocks: list[nn.Module], in_dim: int, width: int, out_dim: int):
        super().__init__()
        self.in_dim = in_dim
        # Stem and head preserve variance (N(0, 1/fan_in)) so they neither help nor hide the blocks.
        self.stem = init_linear(nn.Linear(in_dim, width), "gaussian", 1.0)
        self.blocks = nn.ModuleList(blocks)
        self.head = init_linear(nn.Linear(width, out_dim), "gaussian", 1.0)

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"blocks.{i}", b) for i, b in enumerate(self.blocks)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.in_dim, generator=generator)


def _check(depth: int, width: int) -> None:
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")


@register_model(
    "plain_mlp",
    family="mlp",
    description="x -> phi(W x + b) repeated; Gaussian(sigma_w, sigma_b) or orthogonal init",
    tiny=dict(depth=4, width=8),
)
def plain_mlp(
    depth: int = 32,
    width: int = 128,
    activation: str = "relu",
    slope: float = 1.0,
    init: str = "gaussian",
    sigma_w: float | None = None,
    sigma_b: float = 0.0,
    in_dim: int | None = None,
    out_dim: int = 10,
) -> MLP:
    """A plain MLP of ``depth`` blocks. ``sigma_w=None`` picks the activation's critical scale.

    ``init="orthogonal"`` with ``activation="linear"`` and ``sigma_w = 1/slope`` makes every block
    an isometry (dynamical isometry, claim V8).
    """
    _check(depth, width)
    sw = default_sigma_w(activation, slope) if sigma_w is None else sigma_w
    blocks = [PlainBlock(width, activation, slope, init, sw, sigma_b) for _ in range(depth)]
    return MLP(blocks, in_dim or width, width, out_dim)


@register_model(
    "resnet_mlp",
    family="mlp",
    description="x -> x + alpha * W2 phi(W1 x + b); alpha defaults to 1/sqrt(depth), fixed or learnable",
    tiny=dict(depth=4, width=8),
)
def resnet_mlp(
    depth: int = 32,
    width: int = 128,
    activation: str = "relu",
    slope: float = 1.0,
    init: str = "gaussian",
    sigma_w: float | None = None,
    sigma_b: float = 0.0,
    alpha: float | None = None,
    in_dim: int | None = None,
    out_dim: int = 10,
    learnable_alpha: bool = False,
) -> MLP:
    """A residual MLP of ``depth`` blocks.

    ``alpha=None`` uses 1/sqrt(depth), which keeps the end-to-end gain bounded as depth grows
    (Hayou et al. 2021, "Stable ResNet"); alpha = 1 with critical branches grows like (1 + c)^depth.
    ``learnable_alpha=True`` makes each block's alpha a trained scalar (claim R11 is its gradient).
    """
    _check(depth, width)
    sw = default_sigma_w(activation, slope) if sigma_w is None else sigma_w
    a = 1.0 / math.sqrt(depth) if alpha is None else alpha
    blocks = [ResidualBlock(width, activation, slope, init, sw, sigma_b, a, learnable_alpha) for _ in range(depth)]
    return MLP(blocks, in_dim or width, width, out_dim)


@register_model(
    "rezero_mlp",
    family="mlp",
    description="ReZero: x -> x + alpha * W2 phi(W1 x + b) with learnable alpha = 0 at init (identity blocks)",
    tiny=dict(depth=4, width=8),
)
def rezero_mlp(
    depth: int = 32,
    width: int = 128,
    activation: str = "relu",
    slope: float = 1.0,
    init: str = "gaussian",
    sigma_w: float | None = None,
    sigma_b: float = 0.0,
    in_dim: int | None = None,
    out_dim: int = 10,
) -> MLP:
    """A ReZero residual MLP (Bachlechner et al. 2020): every block's alpha is a learnable scalar
    initialised to 0, so every block is exactly the identity at initialisation; the branches keep
    their usual (critical) init."""
    return resnet_mlp(
        depth=depth,
        width=width,
        activation=activation,
        slope=slope,
        init=init,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        alpha=0.0,
        in_dim=in_dim,
        out_dim=out_dim,
        learnable_alpha=True,
    )


@register_model(
    "fixup_mlp",
    family="mlp",
    description="Fixup: zero-initialised last layer of each branch, first layer scaled by depth^-1/2",
    tiny=dict(depth=4, width=8),
)
def fixup_mlp(
    depth: int = 32,
    width: int = 128,
    activation: str = "relu",
    slope: float = 1.0,
    init: str = "gaussian",
    sigma_w: float | None = None,
    in_dim: int | None = None,
    out_dim: int = 10,
) -> MLP:
    """A Fixup residual MLP (Zhang et al. 2019) of ``depth`` two-layer blocks.

    Fixup also zeroes the classification layer; here the head keeps the variance-preserving init
    of every MLP so the end-to-end Jacobian is not trivially zero. Each block is the identity at
    initialisation.
    """
    _check(depth, width)
    sw = default_sigma_w(activation, slope) if sigma_w is None else sigma_w
    blocks = [FixupBlock(width, depth, activation, slope, init, sw) for _ in range(depth)]
    return MLP(blocks, in_dim or width, width, out_dim)
