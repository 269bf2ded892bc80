"""Claim V9: shear, power norms, the Lyapunov exponent ln rho, and determinism."""

from __future__ import annotations

import math

import pytest
import torch
from tests.ledger.claims.helpers import run_tiny

from depthscope.ledger.claims import _vanishing_common as common
from depthscope.ledger.claims import v09_linear_rnn as v09


def test_v9_shear_keeps_the_spectrum_and_adds_a_transient():
    W = common._recurrent_matrix(16, 0.9, 0.0, seed=7)
    S = common._shear(W, 3.0)
    mods = lambda M: torch.sort(torch.linalg.eigvals(M).abs()).values  # noqa: E731
    assert torch.allclose(mods(W), mods(S), rtol=0, atol=1e-9)
    assert v09._spectral_radius(W) == pytest.approx(0.9, abs=1e-12)
    assert max(v09._power_norms(S, 40)) > 100 * max(v09._power_norms(W, 40))


def test_v9_power_norms_are_operator_norms_of_powers():
    W = common._recurrent_matrix(6, 1.1, 1.0, seed=1)
    norms = v09._power_norms(W, 5)
    for t, n in enumerate(norms, start=1):
        assert n == pytest.approx(float(torch.linalg.matrix_norm(torch.linalg.matrix_power(W, t), ord=2)), rel=1e-12)


def test_v9_lyapunov_exponent_is_log_spectral_radius():
    for r in run_tiny("V9").measured["systems"]:
        assert r["lyapunov"] == pytest.approx(math.log(r["rho"]), abs=0.01)


def test_v9_is_deterministic_for_a_seed():
    assert run_tiny("V9", seed=3).measured == run_tiny("V9", seed=3).measured
