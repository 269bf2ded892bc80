"""Fusion: an eval-mode BatchNorm after a convolution is folded into its weights where nothing else
reads the convolution's output."""

from __future__ import annotations

import torch
from tests.estimators.tape_layers import conv3x3, eval_batchnorm

from depthscope.estimators._tape import record

D = torch.float64


_conv, _bn = conv3x3, eval_batchnorm


conv_same, bn3 = _conv(3, 3, padding="same"), _bn(3)


def test_conv_then_bn_is_one_operation():
    fused = record(lambda x: bn3(conv_same(x)), torch.randn(1, 3, 5, 5, dtype=D, requires_grad=True))[1]
    shared = record(
        lambda x: (lambda y: bn3(y) + y)(conv_same(x)), torch.randn(1, 3, 5, 5, dtype=D, requires_grad=True)
    )[1]
    assert len(fused.ops) == 1  # BN folded into the convolution's weights
    assert len(shared.ops) == 3  # the convolution's output is read twice: nothing to fold
