"""Claim R9: the tiny verdict; exact for the residual block, broken by a norm after the sum."""

from __future__ import annotations

import pytest
from tests.ledger.claims.helpers import SEED, tiny_setting

from depthscope.ledger.claims import r09_alpha_jacobian as r09


@pytest.mark.parametrize("claim_id, verdict", [("R9", "confirmed")])
def test_tiny_verdicts(claim_id, verdict, tiny_results):
    result = tiny_results[claim_id]
    assert result.verdict == verdict, result.reason


def test_r9_is_exact_for_the_residual_block_and_fails_after_a_norm():
    m = r09._measure_r9(tiny_setting("R9"), SEED)
    assert max(r["jacobian_error"] for r in m["rows"]) <= r09.R9_JACOBIAN_TOL
    assert max(r["eigenvalue_error"] for r in m["rows"]) <= r09.R9_EIG_TOL
    zero = next(r for r in m["rows"] if r["alpha"] == 0.0)
    assert zero["max_eig_distance_from_1"] == 0.0 and zero["log_gain"] == pytest.approx(0.0, abs=1e-12)
    post = r09._measure_r9(tiny_setting("R9", block="post_ln"), SEED)
    assert min(r["jacobian_error"] for r in post["rows"]) > 0.1
