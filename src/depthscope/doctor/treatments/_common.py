"""What the treatments share: the promises their re-probes are held to, and their random source."""

from __future__ import annotations

import math

import torch

from depthscope.doctor._finding import EXPLODING, SATURATION, VANISHING
from depthscope.probing import STABLE, Report

# New weights are drawn from a generator of this seed, so a treatment gives the same model twice
# and never moves the global random state.
INIT_SEED = 0
# "Within a factor e": the gradient at the body's input and at its top differ by at most this in
# natural-log units.
GRADIENT_LOG_SPREAD = 1.0
# The findings an end-to-end treatment answers.
GAIN_KINDS = (VANISHING, EXPLODING, SATURATION)
# The promise, in words, of every treatment whose `kept` is `stable(after)`.
BODY_STABLE_PROMISE = "the body's log gain (the blocks between stem and head) inside the stable band"


def generator() -> torch.Generator:
    """A fresh generator at `INIT_SEED`."""
    return torch.Generator().manual_seed(INIT_SEED)


def stable(report: Report) -> bool:
    """The body's log gain lies inside the probe's stable band (``body_verdict`` "stable"); the
    end-to-end verdict where the report has no body.

    The body (`Report.body_span`: the steps between stem and head) is what the treatments change.
    The stem and head can move the end-to-end gain alone: resnet56's head averages an 8 x 8 map
    (a factor 1/8 in RMS gain), so with every block the identity its end-to-end log gain is -3.6
    ("vanishing") while its body's is -1.4.
    """
    if report.body_verdict is not None and report.body_log_gain is not None:
        return report.body_verdict == STABLE and math.isfinite(report.body_log_gain)
    return report.verdict == STABLE and math.isfinite(report.log_gain)


def gradient_log_spread(report: Report) -> float:
    """|log ||dE/dx|| at the body's input - log ||dE/dx|| at its output| (natural log); inf when the
    report has no body. The body's output is the input of the step after it (the head)."""
    if report.body_span is None:
        return math.inf
    rows = {b.index: b for b in report.blocks}
    first, last = report.body_span
    bottom = rows[first].grad_log_norm
    top = rows[last + 1].grad_log_norm if last + 1 in rows else rows[last].grad_log_norm
    return abs(bottom - top) if math.isfinite(bottom) and math.isfinite(top) else math.inf


def gradient_within_e(report: Report) -> bool:
    """The gradient at the body's input is within a factor e of the gradient at its top."""
    return gradient_log_spread(report) <= GRADIENT_LOG_SPREAD
