"""ProcResNet: a CIFAR ResNet whose transitions are bare strided 1x1 convolutions (claim N4).

Zaeemzadeh et al. (TPAMI 2020) show that identity blocks preserve gradient norm while transition
(projection) blocks break it; ProcResNet keeps identity blocks pure and gives each transition no
residual branch at all, just a 1x1 stride-2 convolution whose nonzero singular values are all
sqrt(c_out / c_in) (`procrustes_`, exact for 1x1 kernels):

    3x3 conv stem -> n pre-activation blocks (16w) -> transition -> n blocks (32w) -> transition
    -> n blocks (64w) -> BN-ReLU-pool-linear

Every block and each transition is one chain step. Contains BatchNorm: probe in eval mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depthscope.zoo._layers import init_batchnorm_, init_conv_he_, init_linear
from depthscope.zoo._registry import register_model
from depthscope.zoo.cifar_resnet import (
    CIFAR_CHANNELS,
    CIFAR_CLASSES,
    CIFAR_SIZE,
    CifarResNet,
    PreActBlock,
    stage_channels,
)
from depthscope.zoo.procrustes import procrustes_

# Transitions halve the feature map, as the strided first block of a CIFAR ResNet stage does.
TRANSITION_STRIDE = 2


class Transition(nn.Module):
    """x -> conv1x1_stride2(x), no branch, no normalisation.

    x: (B, c_in, H, W) -> (B, c_out, ceil(H / 2), ceil(W / 2)).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride=TRANSITION_STRIDE, bias=False)
        # Without Procrustes: N(0, 1/c_in), the variance-preserving (LeCun) scale for a linear map,
        # whose singular values spread like the Marchenko-Pastur law around sqrt(c_out / c_in).
        nn.init.normal_(self.conv.weight, 0.0, 1.0 / math.sqrt(c_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ProcResNet(CifarResNet):
    """A `CifarResNet` whose transitions are `Transition` steps; see the module docstring."""

    def transitions(self) -> list[Transition]:
        """The transition blocks, in order."""
        return [b for b in self.blocks if isinstance(b, Transition)]

    def project_transitions_(self) -> ProcResNet:
        """Re-apply `procrustes_` to every transition (after an optimiser step, say); returns self."""
        for t in self.transitions():
            procrustes_(t.conv)
        return self


@register_model(
    "procresnet",
    family="procresnet",
    description="pre-activation CIFAR ResNet with bare 1x1 strided transitions (Procrustes-projected)",
    tiny=dict(n=1, width=0.25, input_size=8),
)
def procresnet(
    n: int = 9,
    width: float = 1.0,
    procrustes: bool = True,
    input_size: int = CIFAR_SIZE,
    in_channels: int = CIFAR_CHANNELS,
    num_classes: int = CIFAR_CLASSES,
) -> ProcResNet:
    """A ProcResNet with ``n`` identity blocks per stage (3n blocks + 2 transitions + stem + head).

    ``procrustes=True`` projects each transition so its nonzero singular values all equal
    sqrt(c_out / c_in); ``False`` leaves the Gaussian init (the control for claim N4).
    """
    if n < 1:
        raise ValueError(f"n (blocks per stage) must be >= 1, got {n}")
    c1, c2, c3 = stage_channels(width)
    # He init for the stem conv (it feeds the first block's BN-ReLU), as in cifar_resnet.
    stem = init_conv_he_(nn.Conv2d(in_channels, c1, 3, padding=1, bias=False))
    blocks: list[nn.Module] = []
    c_prev = c1
    for stage, c in enumerate((c1, c2, c3)):
        if stage > 0:
            transition = Transition(c_prev, c)
            if procrustes:
                procrustes_(transition.conv)
            blocks.append(transition)
        blocks.extend(PreActBlock(c, c, 1, "identity") for _ in range(n))
        c_prev = c
    fc = init_linear(nn.Linear(c3, num_classes), "gaussian", 1.0)
    head = nn.Sequential(init_batchnorm_(nn.BatchNorm2d(c3)), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    return ProcResNet(stem, blocks, head, in_channels, input_size)
