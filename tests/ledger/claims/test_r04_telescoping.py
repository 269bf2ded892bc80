"""Claim R4: the tiny verdict; telescoping and the identity limit at branch scale 0, and the judge."""

from __future__ import annotations

import pytest
from tests.ledger.claims.helpers import SEED, tiny_setting

import depthscope.ledger as ledger
from depthscope._errors import DepthscopeError
from depthscope.ledger.claims import r04_telescoping as r04


@pytest.mark.parametrize("claim_id, verdict", [("R4", "confirmed")])
def test_tiny_verdicts(claim_id, verdict, tiny_results):
    result = tiny_results[claim_id]
    assert result.verdict == verdict, result.reason


def test_r4_telescopes_and_is_the_identity_at_zero_branch_scale():
    m = r04._measure_r4(tiny_setting("R4"), SEED)
    assert m["telescoping_error"] <= r04.R4_ROUNDING
    assert m["identity_gap"][m["scales"].index(0.0)] == 0.0
    # ||J_k - I|| = s ||J_F||: proportional to the branch scale while the states barely move.
    assert 0.8 < m["gap_exponent"] < 1.2


def test_r4_plain_network_is_the_zero_map_not_the_identity_at_zero_scale():
    m = r04._measure_r4(tiny_setting("R4", model="plain_mlp"), SEED)
    assert m["telescoping_error"] > 0.1
    # Zero weights make every layer relu(0) = 0, J_k = 0, so ||J_k - I||_2 = 1 exactly.
    assert m["identity_gap"][m["scales"].index(0.0)] == pytest.approx(1.0, abs=1e-12)


def test_r4_needs_the_limit_itself_in_its_scales():
    with pytest.raises(DepthscopeError, match="include 0"):
        r04._measure_r4(tiny_setting("R4", scales=[0.1, 1.0]), SEED)


def test_r4_judge_refutes_a_gap_that_does_not_vanish():
    m = {"telescoping_error": 0.0, "identity_gap": [0.0, 0.5, 0.5], "scales": [0.0, 0.1, 1.0], "gap_exponent": 0.0}
    assert r04._judge_r4(m, tiny_setting("R4")).verdict == ledger.REFUTED
