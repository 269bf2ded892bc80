"""Claim J4 (seed 001): Pre-LN, g_l = g_{l+1} + ... is an identity gradient highway with no exponential decay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._transformer_common import (
    _LN_CRITERION,
    _LN_PRESETS,
    _LN_REFERENCES,
    _decay_kind,
    _line_fit,
    _ln_context,
    _measure_ln,
    _plot_ln,
)


def _judge_j4(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    variant = setting["variant"]
    kind, numbers = _decay_kind(m["variants"][variant])
    context = _ln_context(m, variant)
    if kind == "exponential":
        return refuted(f"{variant}: the gradient decays exponentially toward the input: {numbers}{context}")
    if kind == "subexponential":
        return qualified(
            f"{variant}: no exponential decay, but the gradient still decays toward the input: {numbers}{context}"
        )
    by = m["variants"][variant]
    depths = sorted(by, key=int)
    rise = np.array([-by[d]["fit"]["decay"] for d in depths])
    growth = ", ".join(f"L={d}: {r:+.2f}" for d, r in zip(depths, rise))
    power = ""
    if len(depths) > 1:
        q = _line_fit(np.log(np.asarray(depths, dtype=float)), rise)[0]
        power = f"; ||g_0||/||g_L|| ~ L^{q:.2f}, polynomial in depth"
    return confirmed(
        f"{variant}: no decay toward the input at any depth; log(||g_0||/||g_L||) = {growth}{power}: the highway adds the "
        f"branches' gradients to g_(l+1); {numbers}{context}"
    )


EXPERIMENT = Experiment(
    id="J4",
    statement="Pre-LN: g_l = g_{l+1} + ...; an identity gradient highway; no exponential decay.",
    source="001",
    expected="in a Pre-LN transformer LM at initialisation the stream gradient does not decay toward the input at any depth",
    refuted_if=_LN_CRITERION + "; refuted if 'exponential', qualified if 'subexponential'",
    presets={
        name: {"variant": "preln", "compare": ["preln", "postln", "deepnorm"], **p} for name, p in _LN_PRESETS.items()
    },
    measure=_measure_ln,
    judge=_judge_j4,
    plot=_plot_ln,
    counterexample={"variant": "contracting", "compare": []},
    references=_LN_REFERENCES,
)
