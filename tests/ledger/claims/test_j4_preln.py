"""Claim J4: the tiny verdict (the judge is tested with J3's in test_transformer_common)."""

from __future__ import annotations

import pytest
from tests.ledger.claims.helpers import run_tiny


@pytest.mark.parametrize("claim_id, verdict", [("J4", "confirmed")])
def test_tiny_verdicts(claim_id, verdict):
    assert run_tiny(claim_id).verdict == verdict
