"""growth_bound: the bound (claim J2) from measured block norms, checked by adding blocks past it."""

from __future__ import annotations

import math

import pytest
import torch
from tests.design.design_models import snapshot, tiny, unchanged

import depthscope as ds
from depthscope.design import blocks_within, bound_for, growth_bound


@pytest.mark.parametrize("eps,tol", [(0.01, 0.05), (0.1, 0.5), (0.02, 0.3), (0.3, 0.05)])
def test_closed_form_matches_the_product_of_equal_norms(eps, tol):
    m = bound_for(eps, tol)
    assert blocks_within([eps] * (m + 5), tol) == m
    assert (1 + eps) ** m <= 1 + tol + 1e-12 and (1 - eps) ** m >= 1 - tol - 1e-12
    assert (1 + eps) ** (m + 1) > 1 + tol or (1 - eps) ** (m + 1) < 1 - tol


def test_uneven_norms_count_their_product():
    # log(1.05) = 0.0488: 0.02 + 0.02 fit (1.0404), a third 0.02 does not (1.0612)
    assert blocks_within([0.02, 0.02, 0.02], 0.05) == 2
    assert blocks_within([0.001, 0.04, 0.02], 0.05) == 2
    assert blocks_within([1.5], 0.5) == 0


@pytest.mark.parametrize("name", ["resnet_mlp", "resnet20"])
def test_measured_gain_stays_inside_up_to_the_bound_and_aligned_blocks_leave_past_it(name):
    model = tiny(name)
    snap = snapshot(model)
    tol, eps = 0.05, 0.01
    plan = growth_bound(model, tol=tol, eps=eps, after="blocks.1")
    assert unchanged(model, snap)
    assert plan.bound == math.floor(math.log1p(tol) / math.log1p(eps)) == 4
    for curve in plan.curves:
        assert len(curve.gain) == 2 * plan.bound + 1
        # measured branch norms are the eps the blocks were built with (the probe's matrix-free
        # Lanczos on the convolutional steps stops at a 1% residual, so 1% is allowed)
        assert curve.norms == pytest.approx([eps] * len(curve.norms), rel=1e-2)
        assert curve.bound == plan.bound
        assert all(1 - tol <= g <= 1 + tol for g in curve.gain[: plan.bound])
    aligned = plan.curve("aligned")
    assert aligned.first_outside == plan.bound + 1
    assert aligned.gain == pytest.approx([(1 + eps) ** m for m in range(1, len(aligned.gain) + 1)], rel=1e-5)
    assert plan.measured_bound == plan.bound


def test_bad_tolerances():
    model = tiny("resnet_mlp")
    for kw in ({"tol": 0.0}, {"tol": 1.5}, {"eps": 0.0}, {"eps": 1.0}):
        with pytest.raises(ds.InputError, match="must lie in"):
            growth_bound(model, **kw)


def test_token_input_model_norms_are_read_by_chain_index():
    # regression: the report has no row for the embedding (its input is token ids), so its rows
    # are not indexed by chain position; reading them by position took the head's empty gap
    model = tiny("transformer_preln")
    x = model.example_input(2, torch.Generator().manual_seed(0))
    plan = growth_bound(model, x, blocks=1)
    lay = ds.design.layout(model, x)
    report = ds.probe(lay.chain, x, lyapunov=0)
    gaps = {b.name: b.identity_gap for b in report.blocks}
    assert plan.model_norms == pytest.approx({s.name: gaps[s.name] for s in lay.sites if s.residual})
