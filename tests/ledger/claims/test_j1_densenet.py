"""Claim J1: per-layer Jacobian norms against ds.probe and brute-force Jacobians, the spread ratio, and every branch of the judge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED, tiny_setting

import depthscope as ds
from depthscope.ledger.claims import j1_densenet as j1


def test_j1_residual_layer_norms_match_probe_cumulative_norms():
    """||d x_k / d x_0||_F from the experiment = exp(cum_log_rms) sqrt(n_0) from ds.probe (exact)."""
    torch.manual_seed(SEED)
    model = ds.create_model("resnet_mlp", depth=3, width=6, alpha=0.7).double()
    x0 = torch.randn(4, 6, dtype=torch.float64)
    ours = j1._layer_jacobian_norms(model, x0)  # (B, L)
    blocks = ds.Chain(ds.Chain.from_module(model).steps[1:-1])
    for b in range(4):
        report = ds.probe(blocks, x0[b : b + 1], exact=True, lyapunov=0)
        expected = np.exp(report.column("cum_log_rms")) * math.sqrt(6)
        np.testing.assert_allclose(ours[b].detach().numpy(), expected, rtol=1e-10)


def test_j1_dense_layer_norms_match_brute_force_jacobian():
    """For a DenseNet, out_k are the features layer k appends: check against jacrev of the full state."""
    torch.manual_seed(SEED)
    model = ds.create_model("densenet_mlp", depth=3, width=5, growth=2).double()
    x0 = torch.randn(2, 5, dtype=torch.float64)
    ours = j1._layer_jacobian_norms(model, x0)
    for b in range(2):

        def final_state(v):
            s = v.unsqueeze(0)
            for layer in model.layers:
                s = layer(s)
            return s[0]

        J = torch.func.jacrev(final_state)(x0[b]).detach()  # (5 + 3 * 2, 5)
        for k in range(1, 4):
            rows = J[5 + (k - 1) * 2 : 5 + k * 2]
            assert float(ours[b, k - 1]) == pytest.approx(float(torch.linalg.matrix_norm(rows)), rel=1e-12)


def test_j1_spread_and_ratio():
    assert j1._spread(np.array([1.0, 2.0, 3.0])) == pytest.approx(np.std([1.0, 2.0, 3.0]))
    assert j1._spread(np.array([1.0, -np.inf])) == math.inf
    assert j1._spread_ratio(math.inf, math.inf) == 1.0
    assert j1._spread_ratio(0.2, 0.4) == pytest.approx(0.5)
    assert j1._spread_ratio(math.inf, 0.4) == math.inf


def _j1_measured(ratios: dict[str, list[float]]) -> dict:
    return {
        "conditions": ["init"],
        "ratio": {"init": ratios},
        "spreads": {"init": {"dense": [1.0, 1.0], **{k: v for k, v in ratios.items()}}},
    }


def test_j1_judge_branches():
    s = tiny_setting("J1")
    assert j1._judge_j1(_j1_measured({"alpha=0.1": [0.2, 0.5]}), s).verdict == "confirmed"
    assert j1._judge_j1(_j1_measured({"alpha=1": [2.0, 3.0]}), s).verdict == "refuted"
    mixed = j1._judge_j1(_j1_measured({"alpha=0.1": [0.2, 0.5], "alpha=1": [2.0, 3.0]}), s)
    assert mixed.verdict == "qualified" and "alpha=1" in mixed.reason


def test_j1_small_alpha_beats_densenet_at_init_and_large_alpha_does_not():
    m = j1._measure_j1(tiny_setting("J1", train_steps=0, alphas=[0.01, 2.0]), SEED)
    assert m["conditions"] == ["init"]
    assert max(m["ratio"]["init"]["alpha=0.01"]) < 1.0
    assert min(m["ratio"]["init"]["alpha=2"]) > 1.0
