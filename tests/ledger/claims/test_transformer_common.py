"""Helpers shared by claims J3 and J4: the decay classification, the depth exponent, and the two judges reading them oppositely."""

from __future__ import annotations

import math

import pytest
from tests.ledger.claims.helpers import tiny_setting

from depthscope.ledger.claims import _transformer_common as tc
from depthscope.ledger.claims import j3_postln as j3
from depthscope.ledger.claims import j4_preln as j4


def _fits(rates, decays, r2=0.99):
    return {str(L): {"fit": {"rate": r, "decay": d, "r2": r2}} for L, r, d in zip((6, 12, 24), rates, decays)}


def test_decay_kind_classifies_the_three_cases():
    assert tc._decay_kind(_fits([0.1, 0.1, 0.1], [0.6, 1.2, 2.4]))[0] == "exponential"
    assert tc._decay_kind(_fits([0.1, 0.05, 0.025], [0.6, 0.6, 0.7]))[0] == "subexponential"  # rate ~ 1/L
    assert tc._decay_kind(_fits([0.1, 0.1, 0.1], [0.6, 1.2, 2.4], r2=0.3))[0] == "subexponential"
    assert tc._decay_kind(_fits([-0.1, 0.01, 0.0], [-0.5, 0.3, 0.1]))[0] == "none"


def test_depth_exponent_recovers_a_power_law():
    by = {str(L): {"w2_last": -0.5 * math.log(L) + 3.0} for L in (6, 12, 24, 48)}
    assert tc._depth_exponent(by) == pytest.approx(-0.5, abs=1e-12)
    assert tc._depth_exponent({"6": {"w2_last": -math.inf}, "12": {"w2_last": 1.0}}) is None


def test_j3_j4_judges_map_decay_kinds_to_opposite_verdicts():
    exp_fits = _fits([0.1, 0.1, 0.1], [0.6, 1.2, 2.4])
    none_fits = _fits([-0.1, -0.05, -0.02], [-0.6, -0.6, -0.5])
    for by in (exp_fits, none_fits):
        for v in by.values():
            v.update(stream=[0.0, 0.1], ln_gain_per_block=None, w2_last=0.0)
    s3, s4 = tiny_setting("J3", variant="preln"), tiny_setting("J4", variant="preln")
    m_exp = {"variants": {"preln": exp_fits}, "xiong_exponent": {"preln": None}}
    m_none = {"variants": {"preln": none_fits}, "xiong_exponent": {"preln": -0.5}}
    assert (j3._judge_j3(m_exp, s3).verdict, j4._judge_j4(m_exp, s4).verdict) == ("confirmed", "refuted")
    assert (j3._judge_j3(m_none, s3).verdict, j4._judge_j4(m_none, s4).verdict) == ("refuted", "confirmed")
