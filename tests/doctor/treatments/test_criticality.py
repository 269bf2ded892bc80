"""Criticality initialisation: the critical sigma_w per activation, orthogonal or Gaussian redraws."""

from __future__ import annotations

import math

import torch
from tests.doctor.treatment_cases import case_for, zoo
from torch import nn

from depthscope.doctor import get_treatment

CRITICALITY = get_treatment("criticality")
# Sampling tolerance on a weight standard deviation estimated from 3 x 64 x 64 = 12288 entries:
# the relative standard error is 1/sqrt(2 * 12288) ~ 0.6%; 3% is five of them.
STD_RTOL = 0.03


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([b.linear.weight.detach().flatten() for b in model.blocks])


def test_relu_is_he_critical_gaussian_and_isometry_is_said_impossible() -> None:
    model, x = zoo("plain_mlp", depth=3, width=64, activation="relu", sigma_w=2.5, sigma_b=0.3)
    case = case_for(model, x, ("exploding",))
    constants = CRITICALITY.constants(case)
    assert math.isclose(constants["sigma_w"], math.sqrt(2.0), rel_tol=1e-9)
    assert constants["orthogonal"] == 0.0 and math.isclose(constants["chi_1"], 1.0, rel_tol=1e-9)
    assert "impossible for relu" in CRITICALITY.applies(case)
    treated = CRITICALITY.apply(model, case)
    w = _weights(treated)
    assert math.isclose(float(w.std()), math.sqrt(2.0) / math.sqrt(64), rel_tol=STD_RTOL)
    assert all(torch.count_nonzero(b.linear.bias) == 0 for b in treated.blocks)
    assert torch.equal(treated.stem.weight, model.stem.weight)  # the stem keeps its weights


def test_tanh_gets_orthogonal_weights_at_sigma_w_one() -> None:
    model, x = zoo("plain_mlp", depth=3, width=16, activation="tanh", sigma_w=0.4)
    case = case_for(model, x, ("vanishing",))
    assert "dynamical isometry" in CRITICALITY.applies(case)
    treated = CRITICALITY.apply(model, case)
    sw = CRITICALITY.constants(case)["sigma_w"]
    assert math.isclose(sw, 1.0, rel_tol=1e-6)
    for block in treated.blocks:
        w = block.linear.weight.detach().double()
        torch.testing.assert_close(w @ w.T, sw**2 * torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0)


def test_linear_slope_is_critical_at_one_over_the_slope() -> None:
    case = case_for(*zoo("plain_mlp", depth=3, width=8, activation="linear", slope=1.5, sigma_w=1.0), ("exploding",))
    assert math.isclose(CRITICALITY.constants(case)["sigma_w"], 1 / 1.5, rel_tol=1e-9)


def test_does_not_apply_to_residual_nets_or_healthy_ones_and_blocks_without_activation() -> None:
    assert CRITICALITY.applies(case_for(*zoo("resnet_mlp", depth=3, width=8), ("vanishing",))) is None
    assert CRITICALITY.applies(case_for(*zoo("plain_mlp", depth=3, width=8))) is None  # no finding
    stack = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])
    assert "activation" in CRITICALITY.blocked(case_for(stack, torch.randn(2, 4), ("exploding",)))


def test_apply_is_deterministic() -> None:
    model, x = zoo("plain_mlp", depth=3, width=8, activation="relu", sigma_w=2.0)
    case = case_for(model, x, ("exploding",))
    a, b = CRITICALITY.apply(model, case), CRITICALITY.apply(model, case)
    assert torch.equal(_weights(a), _weights(b))


def test_sigmoid_critical_point_is_saturated_so_the_treatment_is_blocked() -> None:
    model, x = zoo("plain_mlp", depth=3, width=16, activation="sigmoid")
    case = case_for(model, x, ("vanishing",))
    assert CRITICALITY.applies(case) is not None  # it fits the finding ...
    why = CRITICALITY.blocked(case)  # ... but its critical point sits on sigmoid's flat tails
    assert why is not None and "saturated" in why and "q* = 45" in why
    tanh, xt = zoo("plain_mlp", depth=3, width=16, activation="tanh", sigma_w=0.4)
    assert CRITICALITY.blocked(case_for(tanh, xt, ("vanishing",))) is None  # tanh: critical at q* -> 0
