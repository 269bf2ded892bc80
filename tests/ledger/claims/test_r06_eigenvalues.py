"""Claim R6: the tiny verdict; the circular law, and every branch of the judge."""

from __future__ import annotations

import pytest
from tests.ledger.claims.helpers import SEED, tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims import r06_eigenvalues as r06


@pytest.mark.parametrize("claim_id, verdict", [("R6", "qualified")])
def test_tiny_verdicts(claim_id, verdict, tiny_results):
    result = tiny_results[claim_id]
    assert result.verdict == verdict, result.reason


def test_r6_follows_the_circular_law():
    m = r06._measure_r6(tiny_setting("R6", sizes=[64], entry_std=[0.01], trials=1), SEED)
    (row,) = m["rows"]
    assert row["match_error"] < r06.R6_EIG_TOL
    assert 0.8 < row["radius"] / row["circular_law"] < 1.3


def test_r6_judge_branches():
    def row(radius, err=1e-15):
        return {"n": 8, "std": 0.01, "match_error": err, "radius": radius, "circular_law": radius}

    setting = tiny_setting("R6")
    assert r06._judge_r6({"rows": [row(0.01), row(0.05)]}, setting).verdict == ledger.CONFIRMED
    assert r06._judge_r6({"rows": [row(0.01), row(0.5)]}, setting).verdict == ledger.QUALIFIED
    assert r06._judge_r6({"rows": [row(0.5), row(0.9)]}, setting).verdict == ledger.REFUTED
    assert r06._judge_r6({"rows": [row(0.01, err=1e-6)]}, setting).verdict == ledger.REFUTED
