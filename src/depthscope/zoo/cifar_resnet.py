"""CIFAR-style ResNets with 6n+2 layers and their plain twins (He et al. 2015, Sec. 4.2).

    3x3 conv stem -> 3 stages of n blocks at 16w / 32w / 64w channels -> global average pool -> linear

The first block of stages 2 and 3 halves the feature map (stride 2) and doubles the channels.
Block variants are sibling classes:

    BasicBlock          post-activation: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))  (He et al. 2015)
    PreActBlock         pre-activation:  conv(relu(bn(conv(relu(bn(x)))))) + shortcut(x)  (He et al. 2016)
    PlainBlock          the post-activation block without its shortcut: the plain twin

Shortcuts where the shape changes: ``"identity"`` (option A: stride-2 subsample and zero-padded
channels, parameter-free) or ``"projection"`` (option B: 1x1 strided conv + BN).

Every block is one chain step; the stem and the head (pool + linear) are steps too. Models contain
BatchNorm: probe them in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from depthscope.chain import ChainModule
from depthscope.zoo._layers import init_batchnorm_, init_conv_he_, init_linear
from depthscope.zoo._registry import register_model

# Channels of the three stages at width 1 (He et al. 2015, Sec. 4.2: {16, 32, 64} filters).
STAGE_CHANNELS = (16, 32, 64)
# CIFAR images: 3 colour channels, 32 x 32 pixels, 10 classes.
CIFAR_CHANNELS = 3
CIFAR_SIZE = 32
CIFAR_CLASSES = 10


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    # He init for convs followed by ReLU (He et al. 2015, "Delving deep into rectifiers").
    return init_conv_he_(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False))


def _bn(c: int) -> nn.BatchNorm2d:
    return init_batchnorm_(nn.BatchNorm2d(c))


class IdentityShortcut(nn.Module):
    """Option A: x[:, :, ::stride, ::stride] with zero channels appended up to ``c_out``.

    x: (B, c_in, H, W) -> (B, c_out, ceil(H / stride), ceil(W / stride)); no parameters.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        if c_out < c_in:
            raise ValueError(f"an option-A shortcut cannot drop channels ({c_in} -> {c_out})")
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.c_out - self.c_in))

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, stride={self.stride}"


class ProjectionShortcut(nn.Module):
    """Option B: 1x1 conv with stride, then BN. x: (B, c_in, H, W) -> (B, c_out, H', W')."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv = init_conv_he_(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False))
        self.bn = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


SHORTCUTS: dict[str, type[nn.Module]] = {"identity": IdentityShortcut, "projection": ProjectionShortcut}


def make_shortcut(kind: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """``nn.Identity`` where the shape is kept, else the ``kind`` shortcut (``identity``/``projection``)."""
    if kind not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {kind!r}; choose one of {', '.join(SHORTCUTS)}")
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return SHORTCUTS[kind](c_in, c_out, stride)


class BasicBlock(nn.Module):
    """Post-activation block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    x: (B, c_in, H, W) -> (B, c_out, H / stride, W / stride).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c_in, c_out, stride), _bn(c_out)
        self.conv2, self.bn2 = _conv3x3(c_out, c_out), _bn(c_out)
        self.shortcut = make_shortcut(shortcut, c_in, c_out, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), the residual branch."""
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.branch(x) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block: conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x).

    The shortcut reads the raw input, so with identity shortcuts the stream is x_L = x_0 + sum F_i
    (claim R4). x: (B, c_in, H, W) -> (B, c_out, H / stride, W / stride).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str):
        super().__init__()
        self.bn1, self.conv1 = _bn(c_in), _conv3x3(c_in, c_out, stride)
        self.bn2, self.conv2 = _bn(c_out), _conv3x3(c_out, c_out)
        self.shortcut = make_shortcut(shortcut, c_in, c_out, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), the residual branch."""
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.shortcut(x)


class PlainBlock(nn.Module):
    """The plain twin of `BasicBlock`: relu(bn2(conv2(relu(bn1(conv1(x)))))), no shortcut.

    ``shortcut`` is accepted and ignored so every block class builds from the same arguments.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str = "identity"):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c_in, c_out, stride), _bn(c_out)
        self.conv2, self.bn2 = _conv3x3(c_out, c_out), _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class CifarResNet(ChainModule):
    """stem -> blocks -> head, each block a chain step.

    x: (B, in_channels, input_size, input_size) -> (B, num_classes).
    """

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module, in_channels: int, input_size: int):
        super().__init__()
        self.in_channels = in_channels
        self.input_size = input_size
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def chain_steps(self, x: torch.Tensor | None) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        return [("stem", self.stem), *[(f"blocks.{i}", b) for i, b in enumerate(self.blocks)], ("head", self.head)]

    def example_input(self, batch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.in_channels, self.input_size, self.input_size, generator=generator)


def stage_channels(width: float) -> tuple[int, int, int]:
    """Channels of the three stages for a width multiplier: round(16w), round(32w), round(64w)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    c1, c2, c3 = (max(1, round(c * width)) for c in STAGE_CHANNELS)
    return c1, c2, c3


def cifar_resnet(
    n: int,
    block: type[nn.Module],
    width: float = 1.0,
    shortcut: str = "identity",
    input_size: int = CIFAR_SIZE,
    in_channels: int = CIFAR_CHANNELS,
    num_classes: int = CIFAR_CLASSES,
) -> CifarResNet:
    """A 6n+2-layer CIFAR network of ``block`` (`BasicBlock`, `PreActBlock` or `PlainBlock`)."""
    if n < 1:
        raise ValueError(f"n (blocks per stage) must be >= 1, got {n}")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {', '.join(SHORTCUTS)}")
    c1, c2, c3 = stage_channels(width)
    preact = block is PreActBlock
    stem_conv = _conv3x3(in_channels, c1)
    # Pre-activation blocks (He et al. 2016) normalise their own input, so their stem is the bare
    # conv and the head adds the final BN-ReLU the last block no longer applies; the
    # post-activation stem has its own BN-ReLU (He et al. 2015).
    stem: nn.Module = stem_conv if preact else nn.Sequential(stem_conv, _bn(c1), nn.ReLU())
    blocks: list[nn.Module] = []
    c_prev = c1
    for stage, c in enumerate((c1, c2, c3)):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(block(c_prev, c, stride, shortcut))
            c_prev = c
    # Head: global average pool and a linear classifier with N(0, 1/fan_in) weights.
    fc = init_linear(nn.Linear(c3, num_classes), "gaussian", 1.0)
    pre_head: list[nn.Module] = [_bn(c3), nn.ReLU()] if preact else []
    head = nn.Sequential(*pre_head, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    return CifarResNet(stem, blocks, head, in_channels, input_size)


# Tiny size for conformance tests: channels 4/8/16, an 8x8 input (stages at 8, 4, 2 pixels).
_TINY = dict(width=0.25, input_size=8)


def _register(name: str, n: int, block: type[nn.Module], description: str) -> None:
    def factory(
        width: float = 1.0,
        shortcut: str = "identity",
        input_size: int = CIFAR_SIZE,
        in_channels: int = CIFAR_CHANNELS,
        num_classes: int = CIFAR_CLASSES,
    ) -> CifarResNet:
        return cifar_resnet(n, block, width, shortcut, input_size, in_channels, num_classes)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"{description}: {6 * n + 2} layers (n = {n}); ``width`` multiplies the 16/32/64 channels, "
        "``shortcut`` is 'identity' (option A) or 'projection' (option B)."
    )
    register_model(name, family="cifar_resnet", description=f"{description}, {6 * n + 2} layers", tiny=_TINY)(factory)


# The depths of He et al. 2015, Table 6 (n = 3, 5, 7, 9, 18); build them with create_model(name).
for _depth in (20, 32, 44, 56, 110):
    _n = (_depth - 2) // 6
    _register(f"resnet{_depth}", _n, BasicBlock, "CIFAR ResNet, post-activation (He et al. 2015)")
    _register(f"preact_resnet{_depth}", _n, PreActBlock, "CIFAR ResNet, pre-activation (He et al. 2016)")
    _register(f"plain{_depth}", _n, PlainBlock, "CIFAR plain net: ResNet blocks without shortcuts")
del _depth, _n
