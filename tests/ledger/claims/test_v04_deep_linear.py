"""Claim V4: the closed-form weight gradient matches autograd only without a nonlinearity."""

from __future__ import annotations

from tests.ledger.claims.helpers import run_tiny


def test_v4_closed_form_matches_autograd_only_without_nonlinearity():
    assert run_tiny("V4").measured["max_rel_err"] < 1e-13
    assert run_tiny("V4", activation="tanh").measured["max_rel_err"] > 0.1
