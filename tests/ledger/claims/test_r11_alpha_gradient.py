"""Claim R11: the tiny verdict; autograd's dL/dalpha against a central finite difference."""

from __future__ import annotations

import pytest
import torch
from tests.ledger.claims.helpers import SEED, tiny_setting

from depthscope.ledger.claims import r11_alpha_gradient as r11

# Central differences in float64 at step h: truncation ~h^2 |L'''|, round-off ~1e-16 / h.
FD_STEP = 1e-5
FD_RTOL = 1e-7


@pytest.mark.parametrize("claim_id, verdict", [("R11", "confirmed")])
def test_tiny_verdicts(claim_id, verdict, tiny_results):
    result = tiny_results[claim_id]
    assert result.verdict == verdict, result.reason


@pytest.mark.parametrize("block", ["residual", "post_ln"])
def test_r11_autograd_matches_a_finite_difference(block):
    setting = tiny_setting("R11", block=block)
    m = r11._measure_r11(setting, SEED)
    problem = r11._R11Problem(setting, SEED)
    for k, row in enumerate(m["rows"]):
        alpha = problem.blocks[k].alpha
        with torch.no_grad():
            alpha += FD_STEP
            up = float(problem.loss())
            alpha -= 2 * FD_STEP
            down = float(problem.loss())
            alpha += FD_STEP
        fd = (up - down) / (2 * FD_STEP)
        assert row["autograd"] == pytest.approx(fd, rel=FD_RTOL, abs=1e-10)
        if block == "residual":
            assert row["formula"] == pytest.approx(fd, rel=FD_RTOL, abs=1e-10)
