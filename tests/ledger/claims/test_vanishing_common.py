"""Helpers shared by claims V1-V10: Jacobians, float64 models, log-domain gradient gains and gain classes."""

from __future__ import annotations

import pytest
import torch
from tests.ledger.claims.helpers import plain_mlp

import depthscope as ds
from depthscope.ledger.claims import _vanishing_common as common


def test_jacobian_helper_matches_autograd_functional():
    blocks, _ = common._blocks_of(plain_mlp(depth=3, width=7, activation="tanh", out_dim=7))
    x = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = torch.autograd.functional.jacobian(lambda z: blocks(z.unsqueeze(0))[0], x)
    assert torch.allclose(common._jacobian(blocks, x), ref, rtol=0, atol=1e-13)


def test_build_restores_default_dtype_and_global_rng():
    state = torch.random.get_rng_state()
    model = plain_mlp(depth=2, width=4)
    assert model.blocks[0].linear.weight.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32
    assert torch.equal(torch.random.get_rng_state(), state)


def test_gradient_log_gain_matches_the_probe_log_domain_sweep():
    W = common._recurrent_matrix(12, 1.3, 0.0, seed=2)
    chain = ds.dynamics.rnn_tanh(W, 30)
    h = torch.randn(1, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    u = common._unit(12, torch.Generator().manual_seed(4))
    report = ds.probe(chain, h, loss=lambda out: (out * u).sum(), lyapunov=0, sigma_min=False)
    assert common._gradient_log_gain(chain, h, u) == pytest.approx(report.input_grad_log_norm, abs=1e-9)


def test_gain_classes_use_factor_ten():
    assert common._gain_class(-2.31) == common.VANISHING
    assert common._gain_class(2.31) == common.EXPLODING
    assert common._gain_class(2.29) == common._gain_class(-2.29) == common.MARGINAL
