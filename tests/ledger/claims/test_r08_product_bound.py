"""Claim R8: the tiny verdict; the log-domain products against exact SVDs and the aligned closed form."""

from __future__ import annotations

import math

import pytest
import torch
from tests.ledger.claims.helpers import SEED, tiny_setting

from depthscope.ledger.claims import r08_product_bound as r08


@pytest.mark.parametrize("claim_id, verdict", [("R8", "confirmed")])
def test_tiny_verdicts(claim_id, verdict, tiny_results):
    result = tiny_results[claim_id]
    assert result.verdict == verdict, result.reason


def test_r8_log_domain_product_matches_exact_svd():
    g = torch.Generator().manual_seed(SEED)
    factors = list(r08._r8_factors("random", 6, 0.3, 12, g))
    got = r08._log_extreme_singular_values(iter(factors), {4, 12})
    for depth, (log_max, log_min) in zip((4, 12), got):
        product = torch.eye(6, dtype=torch.float64)
        for a in factors[:depth]:
            product = a @ product
        s = torch.linalg.svdvals(product)
        assert log_max == pytest.approx(math.log(s[0]), abs=1e-12)
        assert log_min == pytest.approx(math.log(s[-1]), abs=1e-10)


def test_r8_aligned_blocks_attain_both_bounds_and_random_ones_stay_inside():
    setting = tiny_setting("R8")
    m = r08._measure_r8(setting, SEED)
    for r in m["rows"]:
        upper, lower = r["depth"] * math.log1p(r["eps"]), r["depth"] * math.log1p(-r["eps"])
        if r["kind"] == "aligned":
            assert r["log_sigma_max"] == pytest.approx(upper, abs=1e-9)
            assert r["log_sigma_min"] == pytest.approx(lower, abs=1e-9)
        elif r["depth"] > 1:
            assert lower < r["log_sigma_min"] <= r["log_sigma_max"] < upper
