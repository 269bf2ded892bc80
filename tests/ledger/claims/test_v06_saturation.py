"""Claim V6: block norms against a direct computation, saturation with the bias, and the judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims import _vanishing_common as common
from depthscope.ledger.claims import v06_saturation as v06
from depthscope.zoo.toys import activation_derivative


def test_v6_block_norms_match_a_direct_computation():
    setting = tiny_setting("V6")
    width = setting["width"]
    r = v06._v6_network(setting, 20.0, seed=11, gen=torch.Generator().manual_seed(0))
    model = common._build(
        "plain_mlp",
        11,
        depth=setting["depth"],
        width=width,
        activation="tanh",
        sigma_w=setting["sigma_w"],
        sigma_b=20.0,
        out_dim=width,
    )
    blocks, stem = common._blocks_of(model)
    # the same first draw from the same generator: the network's inputs
    x = stem(torch.randn(v06.V6_BATCH, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    states = blocks.states(x.detach())
    for k, block in enumerate(model.blocks):
        W = block.linear.weight.detach()
        d = activation_derivative("tanh", block.linear(states[k]).detach())  # (B, width)
        per_example = [float(torch.linalg.svdvals(d[b].unsqueeze(1) * W)[0]) for b in range(v06.V6_BATCH)]
        assert r["dw_norm"][k] == pytest.approx(np.mean(per_example), rel=1e-10)
        assert r["w_norm"][k] == pytest.approx(float(torch.linalg.matrix_norm(W, ord=2)), rel=1e-12)
    assert all(rms <= d + 1e-12 for rms, d in zip(r["rms_gain"], r["dw_norm"]))


def test_v6_more_bias_saturates_more_and_vanishes_faster():
    m = v06._measure_v6(tiny_setting("V6"), seed=0)
    by_sb = {s["sigma_b"]: s for s in m["sweep"]}
    assert by_sb[100.0]["saturated_fraction"] > by_sb[0.0]["saturated_fraction"]
    assert by_sb[100.0]["log_grad_gain"] < by_sb[20.0]["log_grad_gain"] < by_sb[0.0]["log_grad_gain"]


def _v6_measured(gain, dw):
    return {
        "main": {
            "w_norm": [5.0] * len(dw),
            "dw_norm": dw,
            "rms_gain": [0.5] * len(dw),
            "log_grad_gain": gain,
            "saturated_fraction": 0.9,
            "mean_derivative": 0.05,
        },
        "sweep": [{"sigma_b": 50.0, "dw_norm": [0.5]}],
    }


def test_v6_judge_branches():
    setting = tiny_setting("V6")
    assert v06._judge_v6(_v6_measured(-10.0, [0.5, 0.6, 2.0]), setting).verdict == ledger.CONFIRMED
    assert v06._judge_v6(_v6_measured(-10.0, [0.5, 3.0, 2.0]), setting).verdict == ledger.QUALIFIED
    assert v06._judge_v6(_v6_measured(-1.0, [0.5, 0.6, 0.7]), setting).verdict == ledger.REFUTED
