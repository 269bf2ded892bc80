"""From the end-to-end log gain to a verdict and a depth scale."""

from __future__ import annotations

import math

# End-to-end RMS gain outside [1/10, 10] is called vanishing or exploding: a factor 10 in the
# signal (or gradient) scale is where learning-rate tuning stops compensating in practice.
VERDICT_LOG_GAIN = math.log(10.0)

VANISHING = "vanishing"
EXPLODING = "exploding"
STABLE = "stable"


def verdict(log_gain: float, steps: int) -> tuple[str, float]:
    """(verdict, depth_scale) from the end-to-end log gain over ``steps`` steps.

    depth_scale = steps / |log_gain|: the number of steps over which the gain changes by a factor
    e at the chain's average rate (inf when the gain does not change).
    """
    if not math.isfinite(log_gain):
        return (VANISHING if log_gain < 0 else EXPLODING), 0.0
    rate = log_gain / max(1, steps)
    scale = math.inf if rate == 0 else 1.0 / abs(rate)
    if log_gain < -VERDICT_LOG_GAIN:
        return VANISHING, scale
    if log_gain > VERDICT_LOG_GAIN:
        return EXPLODING, scale
    return STABLE, scale
