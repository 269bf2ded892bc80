"""ReZero and stable-ResNet wrapping: the wrapper module, exact identity at alpha = 0, 1/sqrt(L)."""

from __future__ import annotations

import math

import torch
from tests.doctor.treatment_cases import case_for, zoo
from torch import nn
from torch.func import jacrev

from depthscope.doctor import ScaledResidual, get_treatment

REZERO = get_treatment("rezero")
STABLE = get_treatment("stable-resnet")


def test_rezero_wrapper_has_exactly_the_identity_jacobian() -> None:
    torch.manual_seed(0)
    block = ScaledResidual(nn.Sequential(nn.Linear(5, 5), nn.Sigmoid()), 0.0, learnable=True).double()
    x = torch.randn(5, dtype=torch.float64)
    assert torch.equal(jacrev(block)(x), torch.eye(5, dtype=torch.float64))
    assert isinstance(block.alpha, nn.Parameter) and "alpha" in dict(block.named_parameters())


def test_stable_wrapper_alpha_is_a_buffer_and_scales_the_branch() -> None:
    torch.manual_seed(0)
    branch = nn.Linear(3, 3, bias=False).double()
    block = ScaledResidual(branch, 0.25, learnable=False).double()
    assert "alpha" in dict(block.named_buffers()) and not list(p for n, p in block.named_parameters() if n == "alpha")
    x = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(jacrev(block)(x), torch.eye(3, dtype=torch.float64) + 0.25 * branch.weight)


def test_treatments_wrap_every_plain_block() -> None:
    model, x = zoo("plain_mlp", depth=9, width=8, activation="sigmoid")
    case = case_for(model, x, ("vanishing",))
    for treatment, alpha in ((REZERO, 0.0), (STABLE, 1 / 3)):
        treated = treatment.apply(model, case)
        assert all(isinstance(b, ScaledResidual) and b.branch is not m for b, m in zip(treated.blocks, model.blocks))
        assert all(math.isclose(float(b.alpha.detach()), alpha, rel_tol=1e-6) for b in treated.blocks)
        assert math.isclose(treatment.constants(case)["alpha"], alpha)
    with torch.no_grad():  # ReZero's model is stem -> identity blocks -> head
        treated = REZERO.apply(model, case)
        torch.testing.assert_close(treated(x), model.head(model.stem(x)))


def test_blocked_where_nothing_can_be_wrapped() -> None:
    assert "already has a skip" in REZERO.blocked(case_for(*zoo("resnet_mlp", depth=3, width=8), ("vanishing",)))
    pyramid = nn.Sequential(nn.Linear(16, 12), nn.Linear(12, 8), nn.Linear(8, 6), nn.Linear(6, 4), nn.Linear(4, 2))
    assert "changes the shape" in STABLE.blocked(case_for(pyramid, torch.randn(2, 16), ("vanishing",)))
    assert REZERO.applies(case_for(*zoo("resnet_mlp", depth=3, width=8), ("vanishing",))) is None
