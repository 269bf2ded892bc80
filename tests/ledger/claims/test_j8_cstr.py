"""Claim J8: the tiny verdict; the Hopf point and the branch slope against closed forms, the partly diluted reactor, the judge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED, run_tiny, tiny_setting

from depthscope.dynamics import gray_scott
from depthscope.ledger.claims import j8_cstr as j8


def test_j8_analytic_hopf_point():
    D = j8.gray_scott_hopf_analytic(0.05)
    assert D == pytest.approx(j8.J8_HOPF_REFERENCE, abs=1e-7)
    assert (D + 0.05) ** 2 == pytest.approx(D * math.sqrt(0.05), rel=1e-12)


def test_j8_partly_diluted_reactor_jacobian_is_closed_minus_masked_dilution():
    reactor = j8._gray_scott_reactor(0.05, 0.03, ["b"])
    x = torch.tensor([0.4, 0.2], dtype=torch.float64)
    J, Jc = reactor.jacobian(x).numpy(), reactor.closed_jacobian(x).numpy()
    np.testing.assert_allclose(J, Jc - 0.03 * np.diag([1.0, 0.0]), atol=1e-15)
    plain = j8._gray_scott_reactor(0.05, 0.03, [])
    assert type(plain) is type(gray_scott(0.05, 0.03))


def _upper_re_closed_form(k: float, D: float) -> float:
    """Re of the leading eigenvalue on the upper branch: trace / 2 = (k - b^2) / 2 (complex pair), b the
    larger root of (k + D)/D b^2 - b + (k + D) = 0."""
    s = k + D
    b = (1 + math.sqrt(1 - 4 * s * s / D)) * D / (2 * s)
    return (k - b * b) / 2


def test_j8_branch_slope_matches_the_closed_form_derivative():
    br = j8._branch_checks(tiny_setting("J8"))
    D_H, h = br["hopf"], 1e-6
    expected = (_upper_re_closed_form(0.05, D_H + h) - _upper_re_closed_form(0.05, D_H - h)) / (2 * h)
    assert br["slope_along_branch"] == pytest.approx(expected, rel=1e-4)
    assert br["closed_re_at_hopf"] == pytest.approx(D_H, abs=1e-9)
    ref = br["reference"]
    assert ref["re_cstr"] == pytest.approx(_upper_re_closed_form(0.05, ref["D"]), abs=1e-10)


def test_j8_judge_confirms_when_the_branch_moves_like_a_pure_shift():
    s = tiny_setting("J8")
    m = j8._measure_j8(s, SEED)
    assert j8._judge_j8(m, s).verdict == "qualified"
    pure = {**m, "branch": {**m["branch"], "slope_along_branch": -1.02}}
    assert j8._judge_j8(pure, s).verdict == "confirmed"
    no_hopf = {**m, "branch": {"hopf": None, "hopf_error": "no sign change", "analytic": 0.025}}
    assert j8._judge_j8(no_hopf, s).verdict == "refuted"


@pytest.mark.parametrize("claim_id, verdict", [("J8", "qualified")])
def test_tiny_verdicts(claim_id, verdict):
    assert run_tiny(claim_id).verdict == verdict
