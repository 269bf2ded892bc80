"""Cumulative gains from a random frame: the pooled estimate and its standard error."""

import pytest
import torch

from depthscope.estimators import frame_log_rms


def test_frame_log_rms_pools_columns_and_measures_their_spread():
    # Two steps, four columns, one example: squares (1, 1, 1, 1) then (2, 0, 1, 1).
    sq = torch.tensor([[[1.0], [1.0], [1.0], [1.0]], [[2.0], [1e-300], [1.0], [1.0]]], dtype=torch.float64)
    log_rms, se = frame_log_rms(0.5 * sq.log())
    assert log_rms.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert se.tolist() == pytest.approx([0.0, 0.5 * (2 / 3) ** 0.5 / 2], rel=1e-9)
