"""Claim N3: determinism; the law fits, gradient ratios against closed forms, and every branch of the judge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED, run_tiny, tiny_setting

import depthscope as ds
import depthscope.ledger as ledger
from depthscope.ledger.claims import n3_depth_law as n3

DEPTHS = [4, 8, 16, 32, 64, 128]


@pytest.fixture(scope="module")
def tiny() -> ledger.ClaimResult:
    """N3 run once at its tiny size, shared by this module's tests."""
    return run_tiny("N3")


def test_runs_are_deterministic_for_a_seed(tiny):
    again = ledger.run("N3", preset="tiny", figure=False)
    assert again.measured == tiny.measured


@pytest.mark.parametrize("law", list(n3.N3_LAWS))
def test_n3_fit_recovers_each_law(law):
    L = np.asarray(DEPTHS, dtype=float)
    delta = 0.7 * n3.N3_LAWS[law](L)
    fits = {name: n3.fit_law(DEPTHS, delta, name) for name in n3.N3_LAWS}
    c, rms = fits[law]
    assert c == pytest.approx(0.7) and rms == pytest.approx(0.0, abs=1e-12)
    assert min(fits, key=lambda name: fits[name][1]) == law


def test_n3_power_law_exponent():
    b, r2 = n3.power_law_exponent(DEPTHS, 2.0 * np.asarray(DEPTHS, dtype=float) ** -0.5)
    assert b == pytest.approx(-0.5) and r2 == pytest.approx(1.0)


def test_n3_identity_blocks_have_ratio_one():
    """alpha = 0: every block is the identity, so every gradient ratio is exactly 1 and delta = 0."""
    torch.manual_seed(SEED)
    model = ds.create_model("resnet_mlp", depth=5, width=8, alpha=0.0).double()
    report = ds.probe(model, torch.randn(2, 8, dtype=torch.float64), lyapunov=0, sigma_min=False)
    assert n3.max_ratio_deviation(report) == pytest.approx(0.0, abs=1e-12)


def test_n3_linear_block_ratio_matches_closed_form():
    """One linear residual block x + A x: the gradient ratio is ||(I + A)^T g|| / ||g|| for the head's g."""
    torch.manual_seed(SEED)
    a = 0.2 * torch.randn(5, 5, dtype=torch.float64)
    g = torch.randn(5, dtype=torch.float64)
    chain = ds.Chain([("blocks.0", lambda x: x + x @ a.T)])
    report = ds.probe(chain, torch.randn(1, 5, dtype=torch.float64), loss=lambda out: out[0] @ g, lyapunov=0)
    expected = float(((torch.eye(5, dtype=torch.float64) + a).T @ g).norm() / g.norm())
    assert n3.max_ratio_deviation(report) == pytest.approx(abs(expected - 1.0), rel=1e-9)


def _n3_curve(delta) -> dict:
    return n3._curve_summary(DEPTHS, [[d] for d in delta])


@pytest.mark.parametrize(
    "scaled, fixed, verdict, needle",
    [
        (np.log(2.0 * np.asarray(DEPTHS)) / DEPTHS, [0.5 / math.sqrt(L) for L in DEPTHS], "confirmed", "fits as well"),
        (np.log(2.0 * np.asarray(DEPTHS)) / DEPTHS, [0.5] * len(DEPTHS), "qualified", "shrink with depth"),
        ([0.9 / math.sqrt(L) for L in DEPTHS], [0.5] * len(DEPTHS), "qualified", "c/sqrt(L) fits clearly better"),
        ([0.3 * L**0.1 for L in DEPTHS], [0.5] * len(DEPTHS), "refuted", "does not decrease"),
    ],
)
def test_n3_judge_branches(scaled, fixed, verdict, needle):
    m = {"depths": DEPTHS, "scaled": _n3_curve(scaled), "fixed": _n3_curve(fixed)}
    judgement = n3._judge_n3(m, tiny_setting("N3"))
    assert judgement.verdict == verdict and needle in judgement.reason


def test_n3_counterexample_grows_with_depth():
    m = ledger.run("N3", preset="tiny", figure=False, alpha=1.0).measured
    assert m["scaled"]["exponent"] > n3.N3_DECAY_EXPONENT
