"""Claim N1: the tiny verdict; the Fibonacci recurrence against its closed forms, and every branch of the judge."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.ledger.claims.helpers import run_tiny, tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims import n1_fibonacci as n1

PHI = (1 + math.sqrt(5)) / 2
PSI = (1 - math.sqrt(5)) / 2
# float64 round-off over a few dozen steps of a 2 x 2 recurrence.
RECURRENCE_RTOL = 1e-10


@pytest.fixture(scope="module")
def tiny() -> ledger.ClaimResult:
    """N1 run once at its tiny size, shared by this module's tests."""
    return run_tiny("N1")


@pytest.mark.parametrize("claim_id, verdict", [("N1", "confirmed")])
def test_tiny_verdicts(claim_id, verdict, tiny):
    assert tiny.verdict == verdict, tiny.reason


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def test_n1_log_norm_is_half_log_of_odd_fibonacci_number(tiny):
    """From x_0 = (1, 0), x_n = (F_{n+1}, F_n), so ||x_n||^2 = F_{n+1}^2 + F_n^2 = F_{2n+1} exactly."""
    offset = np.asarray(tiny.measured["log_norm_offset"])
    n = np.arange(len(offset))
    exact = np.array([0.5 * math.log(_fib(2 * k + 1)) - k * math.log(PHI) for k in n])
    np.testing.assert_allclose(offset, exact, rtol=0, atol=RECURRENCE_RTOL)
    assert offset[-1] == pytest.approx(0.5 * math.log(PHI / math.sqrt(5)), abs=1e-12)


def test_n1_angle_follows_the_eigenvalue_ratio(tiny):
    """Symmetric A: tan(angle_n) = tan(angle_0) (|psi| / phi)^n, while above the float64 floor."""
    m = tiny.measured
    angles = np.asarray(m["angles"])
    n = np.arange(len(angles))
    predicted = np.tan(angles[0]) * (abs(PSI) / PHI) ** n
    resolved = angles > 1e-10
    np.testing.assert_allclose(np.tan(angles[resolved]), predicted[resolved], rtol=1e-5)
    assert m["alignment_rate"] == pytest.approx(math.log(abs(PSI) / PHI), rel=1e-4)
    assert m["eigenvalues"] == pytest.approx([PHI, PSI], abs=1e-14)
    assert m["lyapunov"] == pytest.approx([math.log(PHI), -math.log(PHI)], abs=1e-12)


def test_n1_psi_start_stays_until_rounding_has_grown(tiny):
    """A float64 start on psi's eigenvector carries a rounding component ~1e-16 along phi's, which grows
    by phi / |psi| = 2.618 per step: it reaches order one after about ln(1e16) / ln 2.618 = 38 steps."""
    step = tiny.measured["psi_start_escape_step"]
    predicted = math.log(1 / np.finfo(float).eps) / math.log(PHI / abs(PSI))
    assert abs(step - predicted) <= 6
    counter = ledger.run("N1", preset="tiny", figure=False, start="psi")
    assert counter.measured["growth_rate"] == pytest.approx(math.log(abs(PSI)), rel=1e-6)
    assert counter.measured["final_angle"] > 1.5


def _n1_measured(**changes) -> dict:
    m = {
        "eigenvalues": [PHI, PSI],
        "growth_rate": math.log(PHI),
        "final_angle": 1e-12,
        "alignment_rate": math.log(abs(PSI) / PHI),
        "lyapunov": [math.log(PHI), -math.log(PHI)],
        "psi_start_escape_step": 40,
        "log_norm_offset": [0.0, -0.16],
    }
    m.update(changes)
    return m


@pytest.mark.parametrize(
    "changes, verdict",
    [
        ({}, "confirmed"),
        ({"alignment_rate": -0.5}, "qualified"),
        ({"growth_rate": 0.47}, "refuted"),
        ({"final_angle": 1e-3}, "refuted"),
        ({"eigenvalues": [PHI + 1e-9, PSI]}, "refuted"),
        ({"lyapunov": [0.47, -0.47]}, "refuted"),
    ],
)
def test_n1_judge_branches(changes, verdict):
    assert n1._judge_n1(_n1_measured(**changes), tiny_setting("N1")).verdict == verdict


def test_n1_rejects_unknown_start():
    with pytest.raises(ValueError):
        n1._n1_start("zero")
