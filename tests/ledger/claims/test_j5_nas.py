"""Claim J5: the tiny verdict; (sigma^2 + s)^L and its second moment against Monte Carlo and autograd, and the judge."""

from __future__ import annotations

import pytest
import torch
from tests.ledger.claims.helpers import SEED, run_tiny, tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims import j5_nas as j5


def test_j5_formula_and_second_moment_match_a_large_monte_carlo_at_one_layer():
    s = tiny_setting("J5", width=4, depths=[1], trials=200_000)
    for skip in (0.0, 0.3, 1.0):
        sq = j5._j5_squared_norms(s, skip, 1, torch.Generator().manual_seed(1))
        assert float(sq.mean()) == pytest.approx(j5.j5_expected_sq_norm(0.5, skip, 1), rel=0.01)
        assert float((sq**2).mean()) == pytest.approx(j5.j5_second_moment(0.5, skip, 1, 4), rel=0.03)


def test_j5_masks_without_weights_are_exact():
    """sigma^2 = 0: ||g_0||^2 is the product of the masks: 1 for s = 1; for s = 1/2 its mean is
    (1/2)^L with independent masks and 1/2 with one tied mask."""
    s = tiny_setting("J5", sigma2=0.0, trials=20_000)
    g = torch.Generator().manual_seed(2)
    assert torch.all(j5._j5_squared_norms(s, 1.0, 4, g) == 1.0)
    assert float(j5._j5_squared_norms(s, 0.5, 4, g).mean()) == pytest.approx(0.5**4, abs=0.01)
    tied = float(j5._j5_squared_norms({**s, "mask": "tied"}, 0.5, 4, g).mean())
    assert tied == pytest.approx(j5.j5_tied_expected_sq_norm(0.0, 0.5, 4), abs=0.02)


def test_j5_monte_carlo_gradient_equals_autograd_of_the_linear_network():
    """The backward recursion g <- (W + b I)^T g is the gradient of <g_L, x_L> w.r.t. x_0."""
    torch.manual_seed(SEED)
    n, L = 5, 3
    Ws = [torch.randn(n, n, dtype=torch.float64) for _ in range(L)]
    bs = [1.0, 0.0, 1.0]
    x0 = torch.randn(n, dtype=torch.float64, requires_grad=True)
    x = x0
    for W, b in zip(Ws, bs):
        x = W @ x + b * x
    gL = torch.zeros(n, dtype=torch.float64)
    gL[0] = 1.0
    (grad,) = torch.autograd.grad(x @ gL, x0)
    u = gL.unsqueeze(0)
    for W, b in zip(reversed(Ws), reversed(bs)):
        u = torch.einsum("tij,ti->tj", W.unsqueeze(0), u) + b * u
    torch.testing.assert_close(u[0], grad)


def test_j5_judge_branches():
    s = tiny_setting("J5")
    row = dict(
        depth=4, s=0.5, mc_mean=1.0, formula=1.0, se=0.01, z=0.0, rel_error=0.0, mc_geometric_mean=0.5, tied_formula=2.5
    )
    assert j5._judge_j5({"rows": [row], "s_balanced": 0.5}, s).verdict == "confirmed"
    assert j5._judge_j5({"rows": [{**row, "z": 5.0}], "s_balanced": 0.5}, s).verdict == "refuted"


@pytest.mark.parametrize("claim_id, verdict", [("J5", "confirmed")])
def test_tiny_verdicts(claim_id, verdict):
    assert run_tiny(claim_id).verdict == verdict


@pytest.mark.parametrize("claim_id", ["J5"])
def test_measurements_are_deterministic_for_a_seed(claim_id):
    exp = ledger.get_experiment(claim_id)
    s = exp.setting("tiny")
    assert exp.measure(s, 3) == exp.measure(s, 3)
