"""Helpers shared by claims R4-R12: Hungarian eigenvalue matching and the post-norm residual block."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED

from depthscope.ledger.claims import _residual_common as common


def test_matched_distance_pairs_conjugates_in_any_order():
    a = np.array([1 + 2j, 1 - 2j, 0.5, -3.0])
    assert common._matched_distance(a, a[::-1].copy()) == 0.0
    assert common._matched_distance(a, a + 1e-3) == pytest.approx(1e-3)


def test_post_norm_block_wraps_the_same_branch():
    model = common._float64_model("resnet_mlp", SEED, depth=1, width=6, alpha=0.5)
    block = model.blocks[0]
    wrapped = common._PostNormResidual(block)
    x = torch.randn(3, 6, dtype=torch.float64)
    assert torch.equal(wrapped.branch(x), block.branch(x))
    assert wrapped.alpha is block.alpha
    y = wrapped(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)
