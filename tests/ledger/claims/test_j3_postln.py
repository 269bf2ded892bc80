"""Claim J3: transformer stream gradients against ds.probe, LayerNorm gains, the contracting highway's closed-form decay."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED, tiny_setting
from torch import nn

import depthscope as ds
import depthscope.ledger as ledger
from depthscope.ledger.claims import _transformer_common as tc
from depthscope.ledger.claims import j3_postln as j3


def _tiny_transformer(variant: str, depth: int = 2) -> tuple[nn.Module, torch.Tensor, torch.Tensor, dict]:
    s = tiny_setting("J3")
    torch.manual_seed(SEED)
    model = tc._ln_transformer(variant, depth, s)
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, s["vocab"], (2, s["seq_len"]), generator=g)
    targets = torch.randint(0, s["vocab"], (2, s["seq_len"]), generator=g)
    return model, ids, targets, s


@pytest.mark.parametrize("variant", ["postln", "preln", "deepnorm"])
def test_j3_stream_gradients_match_probe(variant):
    """The experiment's per-layer log ||dE/dx_l|| equals ds.probe's grad_log_norm for the same loss."""
    model, ids, targets, _ = _tiny_transformer(variant)
    ours = tc._transformer_gradients(model, ids, targets)
    report = ds.probe(model, ids, loss=lambda out: tc._lm_loss(out, targets), lyapunov=0, sigma_min=False)
    np.testing.assert_allclose(ours["stream"], report.column("grad_log_norm"), rtol=1e-5, atol=1e-5)


def test_j3_layernorm_gains_are_recorded_per_layernorm():
    model, ids, targets, _ = _tiny_transformer("postln", depth=3)
    out = tc._transformer_gradients(model, ids, targets)
    assert len(out["ln"]) == 6 and len(out["w2"]) == 3 and len(out["stream"]) == 4
    model, ids, targets, _ = _tiny_transformer("contracting", depth=3)
    out = tc._transformer_gradients(model, ids, targets)
    assert out["ln"] == [] and all(v == -math.inf for v in out["w2"])  # ReZero branches get no gradient at init


def test_j3_contracting_highway_decays_at_the_closed_form_rate():
    """x <- g x per sublayer: log ||g_l|| rises by exactly 2 log(1/g) per block toward the output."""
    m = tc._measure_ln(tiny_setting("J4", variant="contracting", compare=[], depths=[3, 5]), SEED)
    for fit in (v["fit"] for v in m["variants"]["contracting"].values()):
        assert fit["rate"] == pytest.approx(2 * math.log(1 / tc.CONTRACTING_GAIN), rel=1e-6)
        assert fit["r2"] == pytest.approx(1.0, abs=1e-9)
    judged = {"variants": m["variants"], "xiong_exponent": m["xiong_exponent"]}
    s3 = tiny_setting("J3", variant="contracting", compare=[])
    assert j3._judge_j3(judged, s3).verdict == "confirmed"  # J3's judge can confirm an exponential decay


@pytest.mark.parametrize("claim_id", ["J3"])
def test_measurements_are_deterministic_for_a_seed(claim_id):
    exp = ledger.get_experiment(claim_id)
    s = exp.setting("tiny")
    assert exp.measure(s, 3) == exp.measure(s, 3)
