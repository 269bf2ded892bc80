"""Claim V10: the predicted-class bands, the rate networks' sum rule, marginality and the counterexample."""

from __future__ import annotations

import pytest
from tests.ledger.claims.helpers import run_tiny, tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims import _vanishing_common as common
from depthscope.ledger.claims import v10_lyapunov as v10


def test_v10_predicted_class_bands():
    T = 100
    assert v10._predicted_class(-0.05, T) == common.VANISHING  # e^-5 < 1/100
    assert v10._predicted_class(0.05, T) == common.EXPLODING
    assert v10._predicted_class(0.0, T) == common.MARGINAL
    assert v10._predicted_class(0.02, T) == v10.UNDECIDED  # e^2 lies between sqrt(10) and 100


def test_v10_rate_sum_rule_is_exact_and_the_euler_formula_is_not():
    m = run_tiny("V10").measured
    dt, N = tiny_setting("V10")["dt"], tiny_setting("V10")["rate_n"]
    for spectrum in m["rate_spectra"].values():
        assert abs(spectrum["sum_minus_log_det"]) < 1e-10
        assert spectrum["mean_per_time"] == pytest.approx(spectrum["log_det_mean_per_time"], abs=1e-11)
        discrepancy = abs(spectrum["mean_per_time"] - spectrum["euler_formula"])
        assert discrepancy > 1e3 * abs(spectrum["sum_minus_log_det"]) / (N * dt)
        assert discrepancy < 0.05


def test_v10_orthogonal_rnn_is_exactly_marginal():
    rows = {r["name"]: r for r in run_tiny("V10").measured["systems"]}
    assert rows["linear orthogonal"]["log_gain"] == pytest.approx(0.0, abs=1e-10)
    assert rows["linear orthogonal"]["top_exponent"] == pytest.approx(0.0, abs=1e-10)


def test_v10_counterexample_fails_on_a_sheared_linear_system():
    result = run_tiny("V10", **ledger.get_experiment("V10").counterexample)
    wrong = [r for r in result.measured["systems"] if r["predicted"] not in (r["measured"], v10.UNDECIDED)]
    assert wrong and all(r["name"].startswith("linear") for r in wrong)


def test_v10_horizon_must_fit_the_averaging_window():
    with pytest.raises(ValueError, match="horizon"):
        v10._measure_v10(tiny_setting("V10", horizon=1000), seed=0)
