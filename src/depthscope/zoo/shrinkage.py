"""Soft-thresholding residual blocks (deep residual shrinkage networks, Zhao et al. 2020).

    y = x + soft(F(x), tau),   soft(u, tau) = sign(u) * max(|u| - tau, 0)

with a learned per-channel threshold tau = softplus(rho) > 0. Where every entry of the branch
output lies in the dead zone |u| <= tau the block is *exactly* the identity, and so is its
Jacobian (claim R5): soft has zero derivative in u and in tau there.

Zhao et al. compute tau from the input (a small attention net on mean |u|); a learned per-channel
constant keeps the dead zone a fixed, inspectable set while giving the same block shape.

shrinkage_mlp: x: (B, width) blocks, channel = feature.
shrinkage_cnn: x: (B, C, H, W) pre-activation blocks BN-ReLU-conv-BN-ReLU-conv (the RSBU layout).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
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

# Initial threshold, in units of the branch output (which has about unit scale at init): Zhao et
# al.'s thresholds start at sigmoid(0) = 0.5 times the mean |u|, so half of a unit-scale branch.
TAU_INIT = 0.5


def soft_threshold(u: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """sign(u) * max(|u| - tau, 0), elementwise; ``tau`` broadcasts against ``u`` (tau >= 0).

    Exactly zero, with exactly zero gradient in u and tau, wherever |u| <= tau.
    """
    return torch.sign(u) * torch.relu(u.abs() - tau)


class SoftThreshold(nn.Module):
    """Per-channel soft thresholding with a learned tau = softplus(rho) > 0.

    Input (B, C) or (B, C, *spatial); tau has shape (C,) and acts on dimension 1.
    """

    def __init__(self, channels: int, tau_init: float = TAU_INIT):
        super().__init__()
        if tau_init <= 0:
            raise ValueError(f"tau_init must be positive (tau = softplus(rho) > 0), got {tau_init}")
        # softplus^-1(tau) = log(exp(tau) - 1), so the threshold starts at exactly tau_init.
        self.rho = nn.Parameter(torch.full((channels,), math.log(math.expm1(tau_init))))

    @property
    def tau(self) -> torch.Tensor:
        """The thresholds, shape (C,)."""
        return F.softplus(self.rho)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        tau = self.tau.reshape(1, -1, *([1] * (u.ndim - 2)))
        return soft_threshold(u, tau)


class ShrinkageMLPBlock(nn.Module):
    """x -> x + soft(W2 phi(W1 x + b1), tau); x: (B, width)."""

    def __init__(self, width: int, activation: str, slope: float, init: str, sigma_w: float, tau_init: float):
        super().__init__()
        self.fc1 = init_linear(nn.Linear(width, width), init, sigma_w)
        self.act = make_activation(activation, slope)
        # Unit gain back to the stream, as in resnet_mlp, so TAU_INIT is relative to a unit scale.
        self.fc2 = init_linear(nn.Linear(width, width, bias=False), init, 1.0)
        self.shrink = SoftThreshold(width, tau_init)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The branch output u = F(x) before thresholding; (B, width) -> (B, width)."""
        return self.fc2(self.act(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shrink(self.branch(x))


class ShrinkageConvBlock(nn.Module):
    """x -> x + soft(conv(relu(bn(conv(relu(bn(x)))))), tau); x: (B, C, H, W), shape kept."""

    def __init__(self, channels: int, tau_init: float):
        super().__init__()
        self.bn1 = init_batchnorm_(nn.BatchNorm2d(channels))
        self.conv1 = init_conv_he_(nn.Conv2d(channels, channels, 3, padding=1, bias=False))
        self.bn2 = init_batchnorm_(nn.BatchNorm2d(channels))
        self.conv2 = init_conv_he_(nn.Conv2d(channels, channels, 3, padding=1, bias=False))
        self.shrink = SoftThreshold(channels, tau_init)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The branch output u before thresholding; (B, C, H, W) -> (B, C, H, W)."""
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shrink(self.branch(x))


class ShrinkageMLP(ChainModule):
    """stem -> shrinkage blocks -> head. x: (B, in_dim) -> (B, out_dim)."""

    def __init__(self, blocks: list[nn.Module], in_dim: int, width: int, out_dim: int):
        super().__init__()
        self.in_dim = in_dim
        # Variance-preserving stem and head (N(0, 1/fan_in)), as in depthscope.zoo.mlp.
        self.stem = init_linear(nn.Linear(in_dim, width), "gaussian", 1.0)
        self.blocks = nn.ModuleList(blocks)
        self.head = init_linear(nn.Linear(width, out_dim), "gaussian", 1.0)

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"blocks.{i}", b) for i, b in enumerate(self.blocks)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.in_dim, generator=generator)


class ShrinkageCNN(ChainModule):
    """3x3 conv stem -> shrinkage conv blocks at constant width -> BN-ReLU-pool-linear head.

    x: (B, in_channels, input_size, input_size) -> (B, num_classes).
    """

    def __init__(self, depth: int, channels: int, in_channels: int, input_size: int, num_classes: int, tau_init: float):
        super().__init__()
        self.in_channels = in_channels
        self.input_size = input_size
        self.stem = init_conv_he_(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False))
        self.blocks = nn.ModuleList(ShrinkageConvBlock(channels, tau_init) for _ in range(depth))
        fc = init_linear(nn.Linear(channels, num_classes), "gaussian", 1.0)
        # Pre-activation blocks leave the stream un-normalised; the head normalises it once.
        self.head = nn.Sequential(
            init_batchnorm_(nn.BatchNorm2d(channels)), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc
        )

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"blocks.{i}", b) for i, b in enumerate(self.blocks)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.in_channels, self.input_size, self.input_size, generator=generator)


@register_model(
    "shrinkage_mlp",
    family="shrinkage",
    description="x -> x + soft(W2 phi(W1 x + b), tau): exactly the identity in its dead zone",
    tiny=dict(depth=4, width=8),
)
def shrinkage_mlp(
    depth: int = 32,
    width: int = 128,
    activation: str = "relu",
    slope: float = 1.0,
    init: str = "gaussian",
    sigma_w: float | None = None,
    tau_init: float = TAU_INIT,
    in_dim: int | None = None,
    out_dim: int = 10,
) -> ShrinkageMLP:
    """A residual MLP of ``depth`` soft-thresholding blocks; ``sigma_w=None`` is critical for the
    activation."""
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")
    sw = default_sigma_w(activation, slope) if sigma_w is None else sigma_w
    blocks = [ShrinkageMLPBlock(width, activation, slope, init, sw, tau_init) for _ in range(depth)]
    return ShrinkageMLP(blocks, in_dim or width, width, out_dim)


@register_model(
    "shrinkage_cnn",
    family="shrinkage",
    description="conv residual shrinkage blocks (pre-activation, per-channel learned threshold)",
    tiny=dict(depth=2, channels=4, input_size=6),
)
def shrinkage_cnn(
    depth: int = 8,
    channels: int = 16,
    tau_init: float = TAU_INIT,
    in_channels: int = 3,
    input_size: int = 32,
    num_classes: int = 10,
) -> ShrinkageCNN:
    """A CNN of ``depth`` soft-thresholding conv blocks at ``channels`` channels. Probe in eval mode
    (BatchNorm)."""
    if depth < 1 or channels < 1:
        raise ValueError(f"depth and channels must be positive, got depth={depth}, channels={channels}")
    return ShrinkageCNN(depth, channels, in_channels, input_size, num_classes, tau_init)
