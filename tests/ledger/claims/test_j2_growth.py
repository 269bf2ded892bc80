"""Claim J2: the tiny verdict; block constructions, stack gains against brute-force Jacobians, the (1 + eps)^m count, and the judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED, run_tiny, tiny_setting
from torch import nn

import depthscope as ds
from depthscope.ledger.claims import j2_growth as j2


@pytest.mark.parametrize("eps, tol", [(0.05, 0.5), (0.1, 0.5), (0.02, 0.1), (0.3, 1.0)])
def test_j2_max_safe_blocks_is_the_largest_m_within_tolerance(eps, tol):
    m = j2._max_safe_blocks(eps, tol)
    assert (1 + eps) ** m <= 1 + tol + 1e-12
    assert (1 + eps) ** (m + 1) > 1 + tol


def test_j2_block_constructions_have_the_stated_jacobian_norms():
    torch.manual_seed(SEED)
    width, norm = 8, 0.07
    h = torch.randn(16, width)
    rnd = j2._random_block(width, norm)
    assert float(torch.linalg.matrix_norm(rnd.fc1.weight.detach(), ord=2)) == pytest.approx(1.0, rel=1e-5)
    assert float(torch.linalg.matrix_norm(rnd.fc2.weight.detach(), ord=2)) == pytest.approx(norm, rel=1e-5)
    growth = j2._stack_growth([rnd], h)
    assert 0 < growth["branch_norm"][0] <= norm * (1 + 1e-6)
    aligned = j2._stack_growth([j2._aligned_block(width, norm)] * 5, h)
    np.testing.assert_allclose(aligned["gain"], [(1 + norm) ** m for m in range(1, 6)], rtol=1e-12)
    np.testing.assert_allclose(aligned["change"], [(1 + norm) ** m - 1 for m in range(1, 6)], rtol=1e-12)


def test_j2_stack_gain_matches_brute_force_jacobian():
    torch.manual_seed(SEED)
    blocks = [j2._random_block(6, 0.2) for _ in range(3)]
    h = torch.randn(5, 6)
    growth = j2._stack_growth(blocks, h)
    stack = nn.Sequential(*[b.double() for b in blocks])
    J = torch.func.vmap(torch.func.jacrev(lambda v: stack(v.unsqueeze(0))[0]))(h.double()).detach()
    assert growth["gain"][-1] == pytest.approx(float(torch.linalg.matrix_norm(J, ord=2).max()), rel=1e-10)


def test_j2_identity_blocks_preserve_the_function_exactly():
    torch.manual_seed(SEED)
    model = ds.create_model("resnet_mlp", depth=2, width=8, in_dim=64)
    grown = j2._grown(model, j2._identity_blocks(8, 3, 5), 1)
    assert len(grown.blocks) == 5 and len(model.blocks) == 2
    x = torch.rand(10, 64)
    with torch.no_grad():
        assert torch.equal(grown(x), model(x))


def test_j2_judge_refutes_a_bound_violation_and_a_moved_function():
    s = tiny_setting("J2")
    m = j2._measure_j2(s, SEED)
    assert j2._judge_j2(m, s).verdict == "confirmed"
    moved = {**m, "identity_logit_change": 1e-3}
    assert j2._judge_j2(moved, s).verdict == "refuted"
    broken = {
        **m,
        "growth": {**m["growth"], "random": {**m["growth"]["random"], "gain": [g * 1.5 for g in m["bound"]]}},
    }
    assert j2._judge_j2(broken, s).verdict == "refuted"


@pytest.mark.parametrize("claim_id, verdict", [("J2", "confirmed")])
def test_tiny_verdicts(claim_id, verdict):
    assert run_tiny(claim_id).verdict == verdict
