"""Claim R5: the tiny verdict; the dead zone is exact and grows with tau, the threshold setter, the judge."""

from __future__ import annotations

import pytest
import torch
from tests.ledger.claims.helpers import SEED, tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims import _residual_common as common
from depthscope.ledger.claims import r05_dead_zone as r05


@pytest.mark.parametrize("claim_id, verdict", [("R5", "confirmed")])
def test_tiny_verdicts(claim_id, verdict, tiny_results):
    result = tiny_results[claim_id]
    assert result.verdict == verdict, result.reason


def test_r5_dead_zone_is_exact_and_grows_with_tau():
    m = r05._measure_r5(tiny_setting("R5"), SEED)
    rows = m["rows"]
    assert all(r["max_jacobian_deviation_in_zone"] == 0.0 and r["max_move_in_zone"] == 0.0 for r in rows)
    assert all(r["in_zone"] > 0 for r in rows)
    fractions = [r["fraction_in_zone"] for r in rows]
    assert fractions == sorted(fractions) and fractions[-1] > fractions[0]


def test_r5_zero_threshold_has_no_dead_zone():
    m = r05._measure_r5(tiny_setting("R5", taus=[0.0]), SEED)
    assert m["rows"][0]["in_zone"] == 0
    assert m["rows"][0]["fraction_outside_not_identity"] == 1.0


def test_r5_set_tau_is_exact():
    block = common._float64_model("shrinkage_mlp", SEED, depth=1, width=4).blocks[0]
    r05._set_tau(block, 0.25)
    torch.testing.assert_close(block.shrink.tau, torch.full((4,), 0.25, dtype=torch.float64), rtol=1e-15, atol=0)
    r05._set_tau(block, 0.0)
    assert torch.equal(block.shrink.tau, torch.zeros(4, dtype=torch.float64))


def test_r5_judge_refutes_a_moving_dead_zone():
    row = {
        "tau": 0.5,
        "fraction_in_zone": 0.5,
        "in_zone": 3,
        "max_jacobian_deviation_in_zone": 1e-17,
        "max_move_in_zone": 0.0,
        "fraction_outside_not_identity": 1.0,
        "largest_radius_in_zone": 1.0,
    }
    m = {"rows": [row], "inputs": 6, "radius": [0.01, 10.0]}
    assert r05._judge_r5(m, tiny_setting("R5")).verdict == ledger.REFUTED
