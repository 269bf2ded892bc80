"""Claim N2: the tiny verdict; the branch norm against the probe, Weyl's interval, and the judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED, run_tiny, tiny_setting

import depthscope as ds
import depthscope.ledger as ledger
from depthscope.ledger.claims import n2_near_identity as n2

# Weyl's interval and the identity-gap oracle: exact SVDs in float64.
SVD_ATOL = 1e-10


@pytest.fixture(scope="module")
def tiny() -> ledger.ClaimResult:
    """N2 run once at its tiny size, shared by this module's tests."""
    return run_tiny("N2")


@pytest.mark.parametrize("claim_id, verdict", [("N2", "confirmed")])
def test_tiny_verdicts(claim_id, verdict, tiny):
    assert tiny.verdict == verdict, tiny.reason


def test_n2_branch_norm_equals_the_probed_identity_gap():
    """For x + alpha F(x), J - I = alpha J_F: probe's exact ||J - I||_2 is the branch norm we compute."""
    torch.manual_seed(SEED)
    model = ds.create_model("resnet_mlp", depth=3, width=6, alpha=0.3).double()
    chain = n2._n2_chain(model, identity_path=True)
    h0 = torch.randn(1, 6, dtype=torch.float64)
    states = chain.states(h0)
    report = ds.probe(chain, h0, exact=True, lyapunov=0)
    for block, x, stats in zip(model.blocks, states, report.blocks):
        assert n2.branch_jacobian_norm(block, x[0]) == pytest.approx(stats.identity_gap, abs=SVD_ATOL)


def test_n2_weyl_holds_and_the_counterexample_is_the_branch_alone(tiny):
    m = tiny.measured
    for dev, eps in zip(m["deviation"], m["df_norm"]):
        assert dev <= eps + SVD_ATOL
    bare = ledger.run("N2", preset="tiny", figure=False, identity_path=False).measured
    # Without the identity the block Jacobian is DF itself: its largest singular value is ||DF||_2.
    np.testing.assert_allclose(bare["sigma_max"], bare["df_norm"], rtol=1e-9)
    small = [s for s, e in zip(bare["sigma_max"], bare["df_norm"]) if e <= n2.N2_SMALL_DF]
    assert small and max(small) <= n2.N2_SMALL_DF  # far from 1, the opposite of the claim


def test_n2_first_block_norm_is_linear_in_alpha(tiny):
    """The sweep keeps weights and input: the first block sees the same x at every alpha, so
    ||DF||_2 = alpha ||J_F(x)||_2 exactly, and the smallest alpha meets the claim's premise."""
    m = tiny.measured
    blocks = tiny_setting("N2")["blocks"]
    first = [(a, e) for k, (a, e) in enumerate(zip(m["alpha"], m["df_norm"])) if k % blocks == 0]
    per_unit = [e / a for a, e in first]
    # the model stores alpha as a float32 buffer: the nominal alpha is exact to ~1e-8 only
    np.testing.assert_allclose(per_unit, per_unit[0], rtol=1e-6)
    assert min(m["df_norm"]) <= n2.N2_SMALL_DF


@pytest.mark.parametrize(
    "measured, verdict",
    [
        (
            {
                "alpha": [0.01, 1.0],
                "df_norm": [0.02, 2.0],
                "deviation": [0.015, 1.5],
                "sigma_max": [1.01, 2.5],
                "sigma_min": [0.985, 0.5],
                "weyl_excess": -0.005,
            },
            "confirmed",
        ),
        (
            {
                "alpha": [1.0],
                "df_norm": [2.0],
                "deviation": [1.5],
                "sigma_max": [2.5],
                "sigma_min": [0.5],
                "weyl_excess": -0.5,
            },
            "qualified",
        ),
        (
            {
                "alpha": [0.01],
                "df_norm": [0.02],
                "deviation": [0.98],
                "sigma_max": [0.02],
                "sigma_min": [0.0],
                "weyl_excess": 0.96,
            },
            "refuted",
        ),
    ],
)
def test_n2_judge_branches(measured, verdict):
    assert n2._judge_n2(measured, tiny_setting("N2")).verdict == verdict
