"""Claim N4: the tiny verdict; Procrustes transitions against SVD oracles, and every branch of the judge."""

from __future__ import annotations

import math

import pytest
import torch
from tests.ledger.claims.helpers import SEED, run_tiny, tiny_setting
from torch import nn

import depthscope as ds
import depthscope.ledger as ledger
from depthscope.ledger.claims import n4_procrustes as n4
from depthscope.zoo.procresnet import Transition


@pytest.fixture(scope="module")
def tiny() -> ledger.ClaimResult:
    """N4 run once at its tiny size, shared by this module's tests."""
    return run_tiny("N4")


@pytest.mark.parametrize("claim_id, verdict", [("N4", "qualified")])
def test_tiny_verdicts(claim_id, verdict, tiny):
    assert tiny.verdict == verdict, tiny.reason


def test_n4_procrustes_transition_is_uniform_and_random_is_not():
    torch.manual_seed(SEED)
    conv = nn.Conv2d(4, 8, 1, stride=2, bias=False).double()
    assert n4.operator_spread(conv.weight, (6, 6)) > 1.5
    ds.zoo.procrustes_(conv)
    assert n4.operator_spread(conv.weight, (6, 6)) == pytest.approx(1.0, abs=1e-6)


def test_n4_equal_singular_values_make_the_ratio_a_range_fraction():
    """With W = s U V^T, ||W^T g|| = s ||P g|| (P the projector on W's range): the identity the judge
    uses to turn a measured ratio into the share f of the gradient inside the range."""
    torch.manual_seed(SEED)
    c_in, c_out, n = 3, 6, 4
    conv = ds.zoo.procrustes_(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False).double())
    x = torch.randn(1, c_in, n, n, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, c_out, n // 2, n // 2, dtype=torch.float64)
    (grad,) = torch.autograd.grad(conv(x), x, g)
    w = conv.weight.detach()[:, :, 0, 0]
    u, _, _ = torch.linalg.svd(w, full_matrices=False)
    proj = torch.einsum("oi,bipq->bopq", u @ u.T, g)
    s = math.sqrt(c_out / c_in)
    assert float(grad.norm()) == pytest.approx(s * float(proj.norm()), rel=1e-6)


def test_n4_network_settings_act_on_the_right_weights():
    setting = tiny_setting("N4", target_gain=0.5, branch_scale=0.25)
    base = n4._n4_network({**setting, "target_gain": 1.0, "branch_scale": 1.0}, True, SEED)
    net = n4._n4_network(setting, True, SEED)
    for b0, b1 in zip(base.blocks, net.blocks):
        if isinstance(b1, Transition):
            torch.testing.assert_close(b1.conv.weight, 0.5 * b0.conv.weight)
        else:
            torch.testing.assert_close(b1.conv2.weight, 0.25 * b0.conv2.weight)
            torch.testing.assert_close(b1.conv1.weight, b0.conv1.weight)


def test_n4_log_std_is_zero_exactly_for_equal_singular_values():
    torch.manual_seed(SEED)
    conv = ds.zoo.procrustes_(nn.Conv2d(3, 5, 1, bias=False).double())
    assert n4.operator_log_std(conv.weight, (4, 4)) == pytest.approx(0.0, abs=1e-6)
    weight = torch.tensor([[[[1.0]], [[0.0]]], [[[0.0]], [[math.e]]]], dtype=torch.float64)  # diag(1, e)
    assert n4.operator_log_std(weight, (2, 2)) == pytest.approx(0.5)


def test_n4_measured_spreads_and_kernel3(tiny):
    m = tiny.measured
    assert max(m["transition_spread"]["procrustes"]) == pytest.approx(1.0, abs=n4.N4_EQUAL_RTOL)
    assert min(m["transition_spread"]["random"]) > 1.5
    k3 = m["kernel3"]
    assert 0.1 < k3["log_std_after"] < k3["log_std_before"]  # 3x3: the bulk narrowed, not equalised
    assert k3["spread_after"] > 1.5
    assert m["identity_band"] < m["random_max"]


def _n4_measured(**changes) -> dict:
    m = {
        "identity_band": 0.01,
        "random_max": 0.3,
        "random_rms": 0.2,
        "procrustes_max": 0.005,
        "procrustes_rms": 0.004,
        "transition_spread": {"random": [3.0, 4.0], "procrustes": [1.0, 1.0]},
        "transition_target": [math.sqrt(2.0)],
        "range_fraction": [0.49, 0.51],
        "kernel3": {"spread_before": 40.0, "spread_after": 12.0, "log_std_before": 1.0, "log_std_after": 0.6},
    }
    m.update(changes)
    return m


@pytest.mark.parametrize(
    "changes, verdict, needle",
    [
        ({}, "confirmed", "inside the identity blocks' band"),
        ({"procrustes_max": 0.1, "procrustes_rms": 0.05}, "qualified", "narrows"),
        ({"random_max": 0.009}, "qualified", "stayed inside"),
        ({"procrustes_rms": 0.3, "procrustes_max": 0.4}, "refuted", "did not bring"),
        ({"transition_spread": {"random": [3.0], "procrustes": [1.01]}}, "refuted", "did not equalise"),
    ],
)
def test_n4_judge_branches(changes, verdict, needle):
    judgement = n4._judge_n4(_n4_measured(**changes), tiny_setting("N4"))
    assert judgement.verdict == verdict and needle in judgement.reason
