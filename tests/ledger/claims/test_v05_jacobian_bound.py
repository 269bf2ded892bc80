"""Claim V5: the probe's figures against direct SVDs, and the product bound with its growing gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import plain_mlp, tiny_setting

import depthscope as ds
from depthscope.ledger.claims import _vanishing_common as common
from depthscope.ledger.claims import v05_jacobian_bound as v05


def test_v5_probe_figures_match_direct_svds():
    model = plain_mlp(depth=3, width=6, activation="tanh", out_dim=6)
    chain = ds.Chain.from_module(model)
    x = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    states = chain.states(x)
    report = ds.probe(chain, x, exact=True, lyapunov=0)
    direct = [float(torch.linalg.svdvals(common._jacobian(s, states[k][0]))[0]) for k, s in enumerate(chain.steps)]
    assert np.allclose(report.column("local_sigma_max"), direct, rtol=1e-12)
    U, S, _ = torch.linalg.svd(common._jacobian(chain, x[0]))
    top = ds.probe(chain, x, exact=True, lyapunov=0, loss=lambda out: (out * U[:, 0]).sum())
    assert top.input_grad_log_norm == pytest.approx(math.log(float(S[0])), abs=1e-10)
    assert v05._dw_error(model, chain, x, "tanh") < 1e-13


def test_v5_bound_holds_and_its_gap_grows_with_depth():
    shallow = v05._measure_v5(tiny_setting("V5", depth=4), seed=1)
    deep = v05._measure_v5(tiny_setting("V5", depth=16), seed=1)
    assert shallow["min_log_slack"] >= 0 and deep["min_log_slack"] >= 0
    assert min(deep["input_log_gaps"]) > max(shallow["input_log_gaps"])
    assert deep["log_gap_per_step"] > 0


def test_v5_rms_product_is_exceeded_by_the_worst_case_direction():
    m = v05._measure_v5(tiny_setting("V5", bound_norm="rms"), seed=0)
    assert m["min_log_slack"] < 0
