"""DenseNets (Huang et al. 2017): every layer reads the concatenation of all earlier outputs.

The chain carries the growing state

    s_0 = x_0 = stem(x),   s_k = [s_{k-1}, H_k(s_{k-1})] = [x_0, out_1, ..., out_k]

so step k appends ``growth`` new features (channels) to the state. A probe reads the new output
of layer k as ``model.layer_output(s_k, k)`` and measures ||d out_k / d x_0||_F (claim J1, against
a ResNet's per-block Jacobian).

densenet_mlp: H_k(s) = phi(W_k s + b_k); s_k: (B, d_0 + k g).
densenet_cnn: H_k(s) = conv3x3(relu(bn(s))), the DenseNet composite function; s_k: (B, c_0 + k g,
              H, W); a single dense block (no transitions) so every state is a concatenation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from depthscope.chain import ChainModule
from depthscope.zoo._layers import (
    default_sigma_w,
    init_batchnorm_,
    init_conv_he_,
    init_linear,
    make_activation,
)
from depthscope.zoo._registry import register_model


class DenseLinearLayer(nn.Module):
    """s -> [s, phi(W s + b)]; s: (B, c) -> (B, c + growth)."""

    def __init__(
        self, c_in: int, growth: int, activation: str, slope: float, init: str, sigma_w: float, sigma_b: float
    ):
        super().__init__()
        # Var(W) = sigma_w^2 / fan_in with fan_in the whole concatenated state.
        self.linear = init_linear(nn.Linear(c_in, growth), init, sigma_w, sigma_b)
        self.act = make_activation(activation, slope)

    def new_features(self, s: torch.Tensor) -> torch.Tensor:
        """H_k(s), the layer's own output; (B, c) -> (B, growth)."""
        return self.act(self.linear(s))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.cat([s, self.new_features(s)], dim=1)


class DenseConvLayer(nn.Module):
    """s -> [s, conv3x3(relu(bn(s)))]; s: (B, c, H, W) -> (B, c + growth, H, W)."""

    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.bn = init_batchnorm_(nn.BatchNorm2d(c_in))
        self.conv = init_conv_he_(nn.Conv2d(c_in, growth, 3, padding=1, bias=False))

    def new_features(self, s: torch.Tensor) -> torch.Tensor:
        """H_k(s), the layer's own output; (B, c, H, W) -> (B, growth, H, W)."""
        return self.conv(torch.relu(self.bn(s)))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.cat([s, self.new_features(s)], dim=1)


class DenseNet(ChainModule):
    """stem -> dense layers (each appends ``growth`` channels) -> head, each a chain step.

    Attributes:
        init_features: channels of x_0 = stem(x), d_0 (MLP) or c_0 (CNN).
        growth: channels each layer appends, g.
    """

    def __init__(
        self,
        stem: nn.Module,
        layers: list[nn.Module],
        head: nn.Module,
        input_shape: tuple[int, ...],
        init_features: int,
        growth: int,
    ):
        super().__init__()
        self.input_shape = input_shape
        self.init_features = init_features
        self.growth = growth
        self.stem = stem
        self.layers = nn.ModuleList(layers)
        self.head = head

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"layers.{i}", m) for i, m in enumerate(self.layers)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, *self.input_shape, generator=generator)

    def layer_output(self, state: torch.Tensor, k: int) -> torch.Tensor:
        """out_k, the features layer k (1-based) appended, read from any state s_j with j >= k.

        state: (B, c_0 + j g, ...) -> (B, g, ...); k = 0 gives x_0 itself, (B, c_0, ...).
        """
        if k == 0:
            return state[:, : self.init_features]
        start = self.init_features + (k - 1) * self.growth
        if k < 0 or start + self.growth > state.shape[1]:
            raise ValueError(f"state with {state.shape[1]} channels holds no output of layer {k}")
        return state[:, start : start + self.growth]


def _check(depth: int, growth: int) -> None:
    if depth < 1 or growth < 1:
        raise ValueError(f"depth and growth must be positive, got depth={depth}, growth={growth}")


@register_model(
    "densenet_mlp",
    family="densenet",
    description="dense MLP: layer k reads [x_0, out_1, ..., out_{k-1}]; the chain state grows by g",
    tiny=dict(depth=4, width=8, growth=4),
)
def densenet_mlp(
    depth: int = 16,
    width: int = 32,
    growth: int = 16,
    activation: str = "relu",
    slope: float = 1.0,
    init: str = "gaussian",
    sigma_w: float | None = None,
    sigma_b: float = 0.0,
    in_dim: int | None = None,
    out_dim: int = 10,
) -> DenseNet:
    """A dense MLP: stem in_dim -> width (= d_0), ``depth`` layers of ``growth`` features each,
    head d_0 + depth g -> out_dim. ``sigma_w=None`` is the activation's critical scale."""
    _check(depth, growth)
    sw = default_sigma_w(activation, slope) if sigma_w is None else sigma_w
    d_in = in_dim or width
    # Stem and head preserve variance (N(0, 1/fan_in)), as in depthscope.zoo.mlp.
    stem = init_linear(nn.Linear(d_in, width), "gaussian", 1.0)
    layers = [DenseLinearLayer(width + k * growth, growth, activation, slope, init, sw, sigma_b) for k in range(depth)]
    head = init_linear(nn.Linear(width + depth * growth, out_dim), "gaussian", 1.0)
    return DenseNet(stem, layers, head, (d_in,), width, growth)


@register_model(
    "densenet_cnn",
    family="densenet",
    description="small dense CNN: one dense block of BN-ReLU-conv3x3 layers, concatenated state",
    tiny=dict(depth=3, init_channels=4, growth=2, input_size=6),
)
def densenet_cnn(
    depth: int = 12,
    init_channels: int = 16,
    growth: int = 12,
    in_channels: int = 3,
    input_size: int = 32,
    num_classes: int = 10,
) -> DenseNet:
    """One dense block of ``depth`` layers on a 3x3 conv stem (c_0 = ``init_channels``), then
    BN-ReLU-pool-linear. Growth 12 is DenseNet's CIFAR setting (Huang et al. 2017). Contains
    BatchNorm: probe in eval mode."""
    _check(depth, growth)
    # He init for every conv (He et al. 2015), as in DenseNet's reference code.
    stem = init_conv_he_(nn.Conv2d(in_channels, init_channels, 3, padding=1, bias=False))
    layers = [DenseConvLayer(init_channels + k * growth, growth) for k in range(depth)]
    c_final = init_channels + depth * growth
    fc = init_linear(nn.Linear(c_final, num_classes), "gaussian", 1.0)
    head = nn.Sequential(init_batchnorm_(nn.BatchNorm2d(c_final)), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    return DenseNet(stem, layers, head, (in_channels, input_size, input_size), init_channels, growth)
