"""Claim V7: the top and bottom gains against the SVD, and the orthogonal chain scaling alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import tiny_setting

from depthscope.ledger.claims import v07_ill_conditioned as v07


def test_v7_top_gain_is_sigma_max_and_bottom_gain_bounds_sigma_min():
    # shallow enough that an SVD resolves sigma_min: the Lyapunov bound must lie above it
    setting = tiny_setting("V7", depth=3, width=8)
    for seed in range(3):
        r = v07._v7_network(setting, 1.5, torch.Generator().manual_seed(seed))
        s = r["singular_values"]
        assert s[-1] > 1e-8 * s[0]
        assert r["top_log_gain"] == pytest.approx(math.log(s[0]), abs=1e-9)
        assert math.log(s[-1]) <= r["bottom_log_gain"] + 1e-9
        assert len(r["lyapunov"]) == setting["width"]


def test_v7_orthogonal_chain_scales_every_direction_alike():
    setting = tiny_setting("V7", activation="linear", init="orthogonal")
    r = v07._v7_network(setting, 1.1, torch.Generator().manual_seed(0))
    expected = setting["depth"] * math.log(1.1)
    assert np.allclose(r["singular_values"], 1.1 ** setting["depth"], rtol=1e-10)
    assert r["top_log_gain"] == pytest.approx(expected, abs=1e-9)
    assert r["bottom_log_gain"] == pytest.approx(expected, abs=1e-9)
    assert not r["both"]
