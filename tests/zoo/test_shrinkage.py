"""Soft-threshold residual blocks: the dead zone is exactly the identity (claim R5)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jacrev

import depthscope
from depthscope.zoo.shrinkage import (
    TAU_INIT,
    ShrinkageConvBlock,
    ShrinkageMLPBlock,
    SoftThreshold,
    shrinkage_cnn,
    shrinkage_mlp,
    soft_threshold,
)

SEED = 0
WIDTH = 6
# Outside the dead zone, J = I + D J_F with D the 0/1 mask of live channels: float64 round-off.
ORACLE_ATOL = 1e-10


def _jacobian(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d block(x)/dx for one example x of any shape, flattened to (numel, numel)."""
    jac = jacrev(lambda v: block(v.unsqueeze(0)).squeeze(0))(x)
    return jac.reshape(x.numel(), x.numel())


def _into_dead_zone(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Scale x until max |F(x)| < min tau. F is positively homogeneous at init (ReLU, zero biases,
    BatchNorm at zero mean and shift), so a small enough multiple of any x lies in the dead zone."""
    tau_min = block.shrink.tau.min()
    while block.branch(x.unsqueeze(0)).abs().max() >= tau_min:
        x = 0.5 * x
    return x


def test_soft_threshold_formula() -> None:
    u = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.25, 0.5, 2.0], dtype=torch.float64)
    expected = torch.tensor([-2.5, -0.5, 0.0, 0.0, 0.0, 0.0, 1.5], dtype=torch.float64)
    assert torch.equal(soft_threshold(u, torch.tensor(0.5, dtype=torch.float64)), expected)


def test_threshold_positive_and_initialised() -> None:
    layer = SoftThreshold(4)
    torch.testing.assert_close(layer.tau, torch.full((4,), TAU_INIT))
    with torch.no_grad():
        layer.rho.fill_(-200.0)  # softplus underflows toward 0 but never goes negative
    assert (layer.tau >= 0).all()
    with pytest.raises(ValueError):
        SoftThreshold(4, tau_init=0.0)


def test_mlp_block_dead_zone_is_exact_identity() -> None:
    torch.manual_seed(SEED)
    block = ShrinkageMLPBlock(WIDTH, "relu", 1.0, "gaussian", math.sqrt(2.0), TAU_INIT).double()
    x = _into_dead_zone(block, torch.randn(WIDTH, dtype=torch.float64))
    assert torch.equal(block(x.unsqueeze(0)).squeeze(0), x)
    assert torch.equal(_jacobian(block, x), torch.eye(WIDTH, dtype=torch.float64))


def test_mlp_block_outside_dead_zone() -> None:
    """Control: a large input leaves the dead zone; live channels get I + J_F, dead ones stay I."""
    torch.manual_seed(SEED)
    block = ShrinkageMLPBlock(WIDTH, "tanh", 1.0, "gaussian", 1.0, TAU_INIT).double()
    x = 3.0 * torch.randn(WIDTH, dtype=torch.float64)
    u = block.branch(x.unsqueeze(0)).squeeze(0)
    live = (u.abs() > block.shrink.tau).to(torch.float64)
    assert 0 < live.sum() < WIDTH, "pick an input with both live and dead channels"
    assert not torch.equal(block(x.unsqueeze(0)).squeeze(0), x)
    j_f = jacrev(lambda v: block.branch(v.unsqueeze(0)).squeeze(0))(x)
    expected = torch.eye(WIDTH, dtype=torch.float64) + live[:, None] * j_f
    torch.testing.assert_close(_jacobian(block, x), expected, rtol=0.0, atol=ORACLE_ATOL)


def test_conv_block_dead_zone_is_exact_identity() -> None:
    torch.manual_seed(SEED)
    block = ShrinkageConvBlock(2, TAU_INIT).double().eval()
    x = _into_dead_zone(block, torch.randn(2, 4, 4, dtype=torch.float64))
    assert torch.equal(block(x.unsqueeze(0)).squeeze(0), x)
    assert torch.equal(_jacobian(block, x), torch.eye(x.numel(), dtype=torch.float64))


def test_per_channel_threshold() -> None:
    """Each channel has its own tau: raising one channel's tau kills exactly that channel."""
    torch.manual_seed(SEED)
    block = ShrinkageMLPBlock(WIDTH, "relu", 1.0, "gaussian", math.sqrt(2.0), 1e-3).double()
    x = torch.randn(1, WIDTH, dtype=torch.float64)
    with torch.no_grad():
        block.shrink.rho[2] = 50.0  # tau_2 = softplus(50) ~ 50: channel 2 is dead
    y = block(x)
    assert y[0, 2] == x[0, 2]
    assert (y[0, [0, 1, 3, 4, 5]] != x[0, [0, 1, 3, 4, 5]]).any()


def test_threshold_receives_gradient() -> None:
    torch.manual_seed(SEED)
    model = shrinkage_mlp(depth=2, width=WIDTH)
    x = model.example_input(8, torch.Generator().manual_seed(SEED))
    model(x).pow(2).sum().backward()
    for block in model.blocks:
        assert block.shrink.rho.grad is not None and block.shrink.rho.grad.abs().sum() > 0


def test_models_registered_and_shapes() -> None:
    assert depthscope.model_spec("shrinkage_mlp").family == "shrinkage"
    cnn = shrinkage_cnn(depth=2, channels=4, input_size=6).eval()
    x = cnn.example_input(2)
    assert x.shape == (2, 3, 6, 6)
    assert cnn(x).shape == (2, 10)
    chain = depthscope.Chain.from_module(cnn, example=x)
    assert chain.names == ["stem", "blocks.0", "blocks.1", "head"]
