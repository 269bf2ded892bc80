"""Tests of the error control: what the tolerances mean per step (`_error_control`)."""

from __future__ import annotations

import pytest

from depthscope.dynamics import local_tolerance_factor, tolerances_for_local
from depthscope.dynamics._error_control import LOCAL_RTOL_FLOOR


@pytest.mark.parametrize("rtol", [0.5, 1e-3, 1e-4, 1e-6, 1e-9])
def test_tolerances_for_local_inverts_the_factor(rtol):
    factor = local_tolerance_factor(rtol)
    assert 0.0 < factor <= 1.0 and rtol * factor >= LOCAL_RTOL_FLOOR
    back_rtol, back_atol = tolerances_for_local(rtol * factor, 2e-9 * factor)
    assert back_rtol == pytest.approx(rtol, rel=1e-12) and back_atol == pytest.approx(2e-9, rel=1e-12)
