"""Plain, residual, ReZero and Fixup MLPs: initialisation and block Jacobians against exact oracles."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jacrev

import depthscope
from depthscope.zoo.mlp import MLP, FixupBlock, PlainBlock, ResidualBlock, fixup_mlp, plain_mlp, resnet_mlp, rezero_mlp

SEED = 0
WIDTH = 6
# Exact-identity blocks: jacrev in float64 of x + 0 * F(x) is I to round-off (in fact exactly).
IDENTITY_ATOL = 1e-6
# Float64 oracles on problems this small agree to round-off.
ORACLE_ATOL = 1e-10
# Weights drawn in float32 and cast to float64 are orthogonal only to float32 round-off.
FLOAT32_INIT_ATOL = 1e-6
# Sample-statistic checks: with 64*64 = 4096 entries the relative error of a sample std is
# ~1/sqrt(2*4096) ~ 1.1%, so 6% is > 5 standard errors.
STD_RTOL = 0.06


def _block_jacobian(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d block(x) / d x for one example x: (D,) -> (D_out, D)."""
    return jacrev(lambda v: block(v.unsqueeze(0)).squeeze(0))(x)


def _block_inputs(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every block for one example x: (in_dim,)."""
    h = model.stem(x.unsqueeze(0))
    out = []
    for b in model.blocks:
        out.append(h.squeeze(0))
        h = b(h)
    return out


@pytest.mark.parametrize("factory", [rezero_mlp, fixup_mlp], ids=["rezero", "fixup"])
@pytest.mark.parametrize("depth", [1, 5, 64])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_identity_blocks_at_init(factory, depth: int, activation: str) -> None:
    torch.manual_seed(SEED)
    model = factory(depth=depth, width=WIDTH, activation=activation).double()
    x = model.example_input(1, torch.Generator().manual_seed(SEED)).double()[0]
    eye = torch.eye(WIDTH, dtype=torch.float64)
    for k, (block, h) in enumerate(zip(model.blocks, _block_inputs(model, x))):
        jac = _block_jacobian(block, h)
        torch.testing.assert_close(jac, eye, rtol=0.0, atol=IDENTITY_ATOL, msg=f"block {k}")
        torch.testing.assert_close(block(h.unsqueeze(0)).squeeze(0), h, rtol=0.0, atol=IDENTITY_ATOL)


def test_resnet_blocks_are_not_identity() -> None:
    """Control for the test above: an ordinary residual block's Jacobian is far from I."""
    torch.manual_seed(SEED)
    model = resnet_mlp(depth=3, width=WIDTH, alpha=1.0).double()
    h = torch.randn(WIDTH, dtype=torch.float64)
    jac = _block_jacobian(model.blocks[0], h)
    assert (jac - torch.eye(WIDTH, dtype=torch.float64)).abs().max() > 0.1


def test_residual_jacobian_is_identity_plus_alpha_branch() -> None:
    """Claim R9: J = I + alpha J_F, checked against jacrev of the branch alone."""
    torch.manual_seed(SEED)
    alpha = 0.37
    block = ResidualBlock(WIDTH, "tanh", 1.0, "gaussian", 1.0, 0.1, alpha).double()
    h = torch.randn(WIDTH, dtype=torch.float64)
    j_f = jacrev(lambda v: block.branch(v.unsqueeze(0)).squeeze(0))(h)
    expected = torch.eye(WIDTH, dtype=torch.float64) + block.alpha * j_f
    torch.testing.assert_close(_block_jacobian(block, h), expected, rtol=0.0, atol=ORACLE_ATOL)


def test_learnable_alpha_gradient() -> None:
    """Claim R11: dL/dalpha = (grad_y L)^T F(x); fixed alpha is a buffer, learnable a Parameter."""
    torch.manual_seed(SEED)
    fixed = resnet_mlp(depth=2, width=WIDTH)
    assert not any(n.endswith("alpha") for n, _ in fixed.named_parameters())
    assert all(isinstance(b.alpha, torch.Tensor) for b in fixed.blocks)
    model = resnet_mlp(depth=2, width=WIDTH, alpha=0.5, learnable_alpha=True).double()
    block = model.blocks[0]
    assert isinstance(block.alpha, nn.Parameter)
    x = torch.randn(3, WIDTH, dtype=torch.float64)
    g = torch.randn(3, WIDTH, dtype=torch.float64)
    (block(x) * g).sum().backward()
    expected = (g * block.branch(x)).sum()
    torch.testing.assert_close(block.alpha.grad, expected.detach(), rtol=0.0, atol=ORACLE_ATOL)


def test_rezero_leaves_identity_after_a_step() -> None:
    """ReZero's alpha is trained: one SGD step moves it off 0 and the block off the identity."""
    torch.manual_seed(SEED)
    model = rezero_mlp(depth=3, width=WIDTH).double()
    assert all(float(b.alpha.detach()) == 0.0 for b in model.blocks)
    x = model.example_input(4, torch.Generator().manual_seed(SEED)).double()
    model(x).pow(2).sum().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    assert all(float(b.alpha.detach()) != 0.0 for b in model.blocks)
    h = torch.randn(WIDTH, dtype=torch.float64)
    assert (_block_jacobian(model.blocks[0], h) - torch.eye(WIDTH, dtype=torch.float64)).abs().max() > 1e-4


def test_fixup_initialisation() -> None:
    """Zhang et al. 2019: last layer zero, first layer critical std times depth^(-1/2)."""
    torch.manual_seed(SEED)
    depth, width = 16, 64
    model = fixup_mlp(depth=depth, width=width)
    block = model.blocks[0]
    assert isinstance(block, FixupBlock)
    assert torch.count_nonzero(block.fc2.weight) == 0
    expected_std = math.sqrt(2.0) / math.sqrt(width) / math.sqrt(depth)
    stds = torch.stack([b.fc1.weight.std() for b in model.blocks])
    torch.testing.assert_close(stds.mean(), torch.tensor(expected_std), rtol=STD_RTOL, atol=0.0)
    assert float(block.scale.detach()) == 1.0
    assert all(float(b.detach()) == 0.0 for b in (block.bias1a, block.bias1b, block.bias2a, block.bias2b))


def test_gaussian_init_statistics() -> None:
    torch.manual_seed(SEED)
    sigma_w, sigma_b, width = 1.7, 0.3, 64
    model = plain_mlp(depth=8, width=width, activation="tanh", sigma_w=sigma_w, sigma_b=sigma_b)
    w = torch.cat([b.linear.weight.flatten() for b in model.blocks])
    bias = torch.cat([b.linear.bias for b in model.blocks])
    torch.testing.assert_close(w.std(), torch.tensor(sigma_w / math.sqrt(width)), rtol=STD_RTOL, atol=0.0)
    # 8 * 64 = 512 bias entries: relative std error ~3%, so allow 15%.
    torch.testing.assert_close(bias.std(), torch.tensor(sigma_b), rtol=0.15, atol=0.0)


@pytest.mark.parametrize("slope", [0.5, 1.5])
def test_orthogonal_linear_blocks_are_isometries(slope: float) -> None:
    """Claim V8: orthogonal W with a derivative-1 map (linear slope a, sigma_w = 1/a) is an isometry."""
    torch.manual_seed(SEED)
    model = plain_mlp(depth=4, width=WIDTH, activation="linear", slope=slope, init="orthogonal").double()
    h = torch.randn(WIDTH, dtype=torch.float64)
    for block in model.blocks:
        sv = torch.linalg.svdvals(_block_jacobian(block, h))
        torch.testing.assert_close(sv, torch.ones(WIDTH, dtype=torch.float64), rtol=0.0, atol=FLOAT32_INIT_ATOL)


def test_linear_activation_slope() -> None:
    """Claim V3's activation: phi(z) = a z, so the block is a (W x + b)."""
    torch.manual_seed(SEED)
    block = PlainBlock(WIDTH, "linear", 1.5, "gaussian", 1.0, 0.2).double()
    x = torch.randn(3, WIDTH, dtype=torch.float64)
    expected = 1.5 * (x @ block.linear.weight.T + block.linear.bias)
    torch.testing.assert_close(block(x), expected, rtol=0.0, atol=ORACLE_ATOL)


def test_existing_signatures_and_registry() -> None:
    plain_kw = dict(activation="sigmoid", slope=1.0, init="orthogonal", sigma_w=1.0, sigma_b=0.1)
    m = depthscope.create_model("plain_mlp", depth=3, width=5, in_dim=7, out_dim=2, **plain_kw)
    assert m(torch.randn(4, 7)).shape == (4, 2)
    res_kw = dict(activation="linear", slope=1.5, init="gaussian", sigma_w=0.5, sigma_b=0.0, alpha=0.2)
    r = depthscope.create_model("resnet_mlp", depth=3, width=5, in_dim=7, out_dim=2, **res_kw)
    assert r(torch.randn(4, 7)).shape == (4, 2)
    assert all(float(b.alpha.detach()) == pytest.approx(0.2) for b in r.blocks)
    assert float(resnet_mlp(depth=16, width=4).blocks[0].alpha) == pytest.approx(0.25)  # 1/sqrt(depth)
    for name in ("rezero_mlp", "fixup_mlp"):
        assert depthscope.model_spec(name).family == "mlp"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        fixup_mlp(depth=0)
    with pytest.raises(ValueError):
        rezero_mlp(depth=2, width=4, activation="swish")
    with pytest.raises(ValueError):
        plain_mlp(depth=2, width=4, init="xavier")
