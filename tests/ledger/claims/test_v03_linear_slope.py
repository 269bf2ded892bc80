"""Claim V3: the linear tower's factors are powers of its slope."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ledger.claims.helpers import run_tiny


def test_v3_factors_are_powers_of_the_slope():
    m = run_tiny("V3").measured
    assert np.allclose(m["factors"], [1.5**L for L in m["depths"]], rtol=1e-13, atol=0)
    assert m["factor_at"]["10"] == pytest.approx(57.6650390625, rel=1e-13)
    assert m["factor_at"]["20"] == pytest.approx(3325.256730079651, rel=1e-13)
