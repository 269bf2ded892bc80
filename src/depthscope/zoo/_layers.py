"""Activations and initialisers shared by the zoo's families."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


# The weight scale sigma_w that keeps the forward variance fixed for each activation at zero bias
# (He et al. 2015 for ReLU: 2; tanh and linear slope a: 1/a^2, Glorot & Bengio 2010; sigmoid has no
# critical point at zero bias, its derivative is at most 1/4, and 1 is the conventional choice).
def default_sigma_w(activation: str, slope: float = 1.0) -> float:
    """The zoo's default sigma_w (Var(W) = sigma_w^2 / fan_in) for ``activation``.

    Critical (chi_1 = 1 in mean-field theory at sigma_b = 0) for ReLU (He, sqrt 2), tanh (1) and
    the linear activation (1/|a|). For sigmoid it is 1, which is NOT critical (sigmoid' <= 1/4, so
    chi_1 < 1/16): a deep plain sigmoid net vanishes at this default, the theory's standard example.
    The mean-field critical scale of any activation is `depthscope.doctor.critical_sigma_w`.
    """
    scales = {"relu": math.sqrt(2.0), "tanh": 1.0, "sigmoid": 1.0, "linear": 1.0 / abs(slope)}
    if activation not in scales:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    return scales[activation]


class Linear(nn.Module):
    """The linear activation a * x (claim V3 uses a = 1.5)."""

    def __init__(self, slope: float = 1.0):
        super().__init__()
        self.slope = float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.slope * x

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


def make_activation(name: str, slope: float = 1.0) -> nn.Module:
    """``relu`` | ``tanh`` | ``sigmoid`` | ``linear`` (slope a) as a module."""
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "linear":
        return Linear(slope)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


INITS = ("gaussian", "orthogonal")


@torch.no_grad()
def init_linear(layer: nn.Linear, init: str, sigma_w: float, sigma_b: float = 0.0) -> nn.Linear:
    """Initialise in place: ``gaussian``: W ~ N(0, sigma_w^2 / fan_in); ``orthogonal``: sigma_w
    times a (semi-)orthogonal matrix (Saxe et al. 2014). Bias ~ N(0, sigma_b^2)."""
    if init == "gaussian":
        layer.weight.normal_(0.0, sigma_w / math.sqrt(layer.in_features))
    elif init == "orthogonal":
        nn.init.orthogonal_(layer.weight, gain=sigma_w)
    else:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if layer.bias is not None:
        if sigma_b > 0:
            layer.bias.normal_(0.0, sigma_b)
        else:
            layer.bias.zero_()
    return layer


@torch.no_grad()
def init_conv_he_(conv: nn.Conv2d) -> nn.Conv2d:
    """He et al. 2015 ("Delving deep into rectifiers") normal init for a conv followed by ReLU,
    with n = k * k * c_out as in the ResNet reference code (fb.resnet.torch, torchvision):
    W ~ N(0, 2 / n). Bias, if any, zero."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


@torch.no_grad()
def init_batchnorm_(bn: nn.modules.batchnorm._BatchNorm) -> nn.modules.batchnorm._BatchNorm:
    """The standard BatchNorm start (Ioffe & Szegedy 2015): scale 1, shift 0."""
    bn.weight.fill_(1.0)
    bn.bias.zero_()
    return bn
