"""Toy models of the theory, small enough to have closed forms.

scalar_tower: f_L = sigma(w_L sigma(... sigma(w_1 x))), x a scalar; z_k = w_k a_{k-1}, a_0 = x.
    d f_L / d w_1 = x sigma'(z_1) prod_{k=2..L} w_k sigma'(z_k)          (`scalar_tower_grad_w1`)
    With unit upper weights (the tower sigma(sigma(... w x)) of claim V1) this is
    x prod_k sigma'(z_k).
deep_linear: f = W_L ... W_1 x, x: (B, width)                              (claims V4, V8, R12)
    d f / d x = W_L ... W_1                                                  (`end_to_end_matrix`)
    d Loss / d W_k = (W_L..W_{k+1})^T g (W_{k-1}..W_1 x)^T, g = dLoss/df      (`deep_linear_weight_grad`)

In both, every layer is a chain step; stem and head are identities so that the first layer's
Jacobian is part of the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from depthscope.chain import ChainModule
from depthscope.zoo._layers import ACTIVATIONS, INITS, init_linear, make_activation
from depthscope.zoo._registry import register_model


def activation_derivative(name: str, z: torch.Tensor, slope: float = 1.0) -> torch.Tensor:
    """sigma'(z) in closed form for ``relu`` (1[z > 0]), ``tanh``, ``sigmoid`` and ``linear`` (slope a)."""
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "tanh":
        return 1.0 - torch.tanh(z) ** 2
    if name == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1.0 - s)
    if name == "linear":
        return torch.full_like(z, slope)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


class ScalarLayer(nn.Module):
    """a -> sigma(w a) with one scalar weight w; a: (B, 1)."""

    def __init__(self, w: float, activation: str, slope: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))
        self.act = make_activation(activation, slope)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.act(self.w * a)


class ScalarTower(ChainModule):
    """x (B, 1) -> f_L (B, 1); one chain step per scalar layer."""

    def __init__(self, weights: Sequence[float], activation: str, slope: float):
        super().__init__()
        self.activation = activation
        self.slope = float(slope)
        self.stem = nn.Identity()
        self.layers = nn.ModuleList(ScalarLayer(w, activation, slope) for w in weights)
        self.head = nn.Identity()

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"layers.{i}", m) for i, m in enumerate(self.layers)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ N(0, 1), (batch, 1)."""
        return torch.randn(batch, 1, generator=generator)

    def preactivations(self, x: torch.Tensor) -> torch.Tensor:
        """z_1..z_L, (B, L), for x (B, 1)."""
        zs, a = [], x
        for layer in self.layers:
            z = layer.w * a
            zs.append(z)
            a = layer.act(z)
        return torch.cat(zs, dim=-1)


def scalar_tower_grad_w1(model: ScalarTower, x: torch.Tensor) -> torch.Tensor:
    """The closed form d f_L / d w_1 = x sigma'(z_1) prod_{k>=2} w_k sigma'(z_k), (B, 1) for x (B, 1).

    Claim V1 states it as x prod_k sigma'(z_k): the case w_k = 1 for k >= 2.
    """
    with torch.no_grad():
        d = activation_derivative(model.activation, model.preactivations(x), model.slope)  # (B, L)
        upper = torch.stack([layer.w for layer in model.layers[1:]]) if len(model.layers) > 1 else x.new_ones(0)
        return x * d.prod(dim=-1, keepdim=True) * upper.to(x.dtype).prod()


@register_model(
    "scalar_tower",
    family="toys",
    description="f = sigma(w_L sigma(... sigma(w_1 x))), scalar; closed-form df/dw_1 (claim V1)",
    tiny=dict(depth=4),
)
def scalar_tower(
    depth: int = 20,
    w: float = 1.0,
    weights: Sequence[float] | None = None,
    activation: str = "sigmoid",
    slope: float = 1.0,
) -> ScalarTower:
    """A scalar tower of ``depth`` layers, every weight ``w`` unless ``weights`` (length depth) is given.

    The default (sigmoid, w = 1) is the tower of claim V2: sigma' <= 1/4 per layer.
    """
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    ws = [w] * depth if weights is None else list(weights)
    if len(ws) != depth:
        raise ValueError(f"weights has {len(ws)} entries for a tower of depth {depth}")
    return ScalarTower(ws, activation, slope)


class DeepLinear(ChainModule):
    """x (B, width) -> W_L ... W_1 x (B, width); one chain step per matrix."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.width = layers[0].in_features
        self.stem = nn.Identity()
        self.layers = nn.ModuleList(layers)
        self.head = nn.Identity()

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"layers.{i}", m) for i, m in enumerate(self.layers)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ N(0, I), (batch, width)."""
        return torch.randn(batch, self.width, generator=generator)


def end_to_end_matrix(model: DeepLinear, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """W_{stop} ... W_{start+1} (1-based), the product of ``layers[start:stop]``; identity when empty."""
    layers = model.layers[start:stop]
    with torch.no_grad():
        out = torch.eye(model.width, dtype=model.layers[0].weight.dtype)
        for layer in layers:
            out = layer.weight @ out
    return out


def deep_linear_weight_grad(model: DeepLinear, x: torch.Tensor, grad_out: torch.Tensor, k: int) -> torch.Tensor:
    """Closed-form dLoss/dW_k (claim V4) for layer index k (0-based), summed over the batch.

    x: (B, width) inputs, grad_out: (B, width) = dLoss/df. Returns (width, width):
    (W_L..W_{k+2})^T g (W_k..W_1 x)^T in 1-based indices, i.e. the other matrices' products.
    """
    after = end_to_end_matrix(model, k + 1)
    before = end_to_end_matrix(model, 0, k)
    return (grad_out @ after).T @ (x @ before.T)


@register_model(
    "deep_linear",
    family="toys",
    description="deep linear network W_L ... W_1 x; Gaussian or orthogonal init of gain `scale`",
    tiny=dict(depth=4, width=6),
)
def deep_linear(depth: int = 20, width: int = 32, init: str = "gaussian", scale: float = 1.0) -> DeepLinear:
    """``gaussian``: W_k ~ N(0, scale^2/width) (norm-preserving on average at scale 1);
    ``orthogonal``: scale * Q (Saxe et al. 2014), an exact isometry at scale 1 (claim V8)."""
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    layers = [init_linear(nn.Linear(width, width, bias=False), init, scale) for _ in range(depth)]
    return DeepLinear(layers)
