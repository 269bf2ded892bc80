"""Seeded float64 layers shared by the tape tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(c_in: int, c_out: int, **kw) -> nn.Conv2d:
    """A 3x3 convolution with fixed random weights, float64."""
    torch.manual_seed(1)
    return nn.Conv2d(c_in, c_out, 3, **kw).double()


def eval_batchnorm(c: int) -> nn.BatchNorm2d:
    """An eval-mode BatchNorm with random running statistics and scales, float64 (nothing trivial to fold)."""
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(c).double().eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.normal_()
    return bn
