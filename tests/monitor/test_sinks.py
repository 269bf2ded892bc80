"""The console line fits the terminal: 80 and 120 columns."""

from __future__ import annotations

import math

from depthscope.monitor import StepRecord, summary_line

K = 30
BLOCKS = tuple(f"encoder.layers.{k}.block" for k in range(K))


def _record() -> StepRecord:
    per_block = tuple(10.0 ** (-k) for k in range(K))[::-1]
    return StepRecord(
        step=1200,
        loss=0.4123,
        grad_norm=per_block,
        grad_ratio=per_block,
        param_grad_norm=per_block,
        update_ratio=per_block,
        act_mean_sq=per_block,
        act_var=per_block,
        branch_var=per_block,
        end_to_end=1e-29,
        grad_scale=1.0,
    )


def test_summary_line_fits_80_and_120_columns():
    r = _record()
    whole = summary_line(r, BLOCKS)
    assert "weakest encoder.layers.0.block" in whole and "loss 0.4123" in whole
    for width in (80, 120):
        line = summary_line(r, BLOCKS, width)
        assert len(line) <= width and line.startswith("depthscope ") and "1200" in line
    assert "weakest" not in summary_line(r, BLOCKS, 120)  # the first part left out
    assert math.isfinite(r.loss)
