"""Claim J3 (seed 001): Post-LN, the LayerNorm Jacobian at every block makes gradients vanish exponentially toward the input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._transformer_common import (
    _LN_CRITERION,
    _LN_PRESETS,
    _LN_REFERENCES,
    STREAM_LN_VARIANTS,
    _decay_kind,
    _ln_context,
    _measure_ln,
    _plot_ln,
)


def _judge_j3(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    variant = setting["variant"]
    kind, numbers = _decay_kind(m["variants"][variant])
    context = _ln_context(m, variant)
    if kind == "exponential":
        return confirmed(
            f"{variant}: the gradient decays exponentially toward the input with a depth-independent rate: {numbers}{context}"
        )
    if kind == "subexponential":
        return qualified(
            f"{variant}: the gradient decays toward the input, but not at a rate that persists with depth "
            f"(not exponential): {numbers}{context}"
        )
    by = m["variants"][variant]
    ln_gain = by[max(by, key=int)]["ln_gain_per_block"]
    why = ""
    if variant in STREAM_LN_VARIANTS and ln_gain is not None and ln_gain < 0:
        why = (
            ". The LayerNorm contraction is real, but the residual branch's Jacobian restores what it takes; Liu et al. 2020 "
            "(Admin) likewise see Post-LN gradients vanish in the decoder of encoder-decoder models, not in the encoder, and find "
            "that vanishing is not what makes Post-LN training unstable"
        )
    return refuted(
        f"{variant} at initialisation: the input gradient is not below half the output gradient at any depth: "
        f"{numbers}{context}{why}"
    )


EXPERIMENT = Experiment(
    id="J3",
    statement=(
        "Post-LN: the backward signal passes the LayerNorm Jacobian at every block, which contracts, so gradients "
        "vanish exponentially toward the input."
    ),
    source="001",
    expected="in a Post-LN transformer LM at initialisation the stream gradient decays exponentially toward the input at a rate that persists with depth",
    refuted_if=_LN_CRITERION + "; refuted if 'none', qualified if 'subexponential'",
    presets={
        name: {"variant": "postln", "compare": ["postln", "preln", "deepnorm"], **p} for name, p in _LN_PRESETS.items()
    },
    measure=_measure_ln,
    judge=_judge_j3,
    plot=_plot_ln,
    counterexample={"variant": "preln"},
    references=_LN_REFERENCES,
)
