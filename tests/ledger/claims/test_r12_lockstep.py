"""Claim R12: the tiny verdict; the zero-init gradient g x^T, its spread with the init scale, the judge."""

from __future__ import annotations

import pytest
import torch
from tests.ledger.claims.helpers import SEED, tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims import r12_lockstep as r12


@pytest.mark.parametrize("claim_id, verdict", [("R12", "qualified")])
def test_tiny_verdicts(claim_id, verdict, tiny_results):
    result = tiny_results[claim_id]
    assert result.verdict == verdict, result.reason


def test_r12_zero_init_gradient_is_g_x_transpose_in_every_block():
    setting = tiny_setting("R12", scales=[0.0], depths=[3, 7])
    m = r12._measure_r12(setting, SEED)
    n, batch = setting["width"], setting["batch"]
    for r in m["rows"]:
        g = torch.Generator().manual_seed(SEED)
        x = torch.randn(batch, n, generator=g, dtype=torch.float64)
        t = torch.randn(batch, n, generator=g, dtype=torch.float64)
        closed_form = (x - t).T @ x / batch  # dL/dW_k = mean_b (x_L - t) x_k^T with x_L = x_k = x
        assert r["grad_norm"] == pytest.approx(float(closed_form.norm()), rel=1e-12)
        assert r["spread"] < 1e-14
        assert r["update_ratio"] == pytest.approx(1.0, abs=1e-12)
        assert r["update_norm"] == pytest.approx(r["depth"] * r["grad_norm"], rel=1e-12)


def test_r12_gradients_spread_with_init_scale():
    m = r12._measure_r12(tiny_setting("R12", scales=[0.01, 0.5], depths=[8]), SEED)
    small, large = m["rows"]
    assert small["spread"] < r12.R12_SPREAD_TOL < large["spread"]


def test_r12_judge_confirms_when_every_scale_holds():
    rows = [
        {"scale": s, "depth": d, "spread": 0.0, "grad_norm": 1.0, "update_norm": float(d), "update_ratio": 1.0}
        for s in (0.0, 0.001)
        for d in (2, 8)
    ]
    setting = tiny_setting("R12", scales=[0.0, 0.001])
    assert r12._judge_r12({"rows": rows}, setting).verdict == ledger.CONFIRMED
