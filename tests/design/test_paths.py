"""paths: the gradient split by path length (Veit et al. 2016, claim J6) against a brute-force expansion."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from tests.design.design_models import snapshot, tiny, unchanged
from tests.oracles import step_jacobians
from torch import nn

import depthscope as ds
from depthscope.design import effective_range, paths


def test_path_gradients_match_the_expanded_product():
    """Every subset of branches, enumerated (2^L products of explicit Jacobians in float64)."""
    model = tiny("resnet_mlp", depth=3, width=5).double()
    x = model.example_input(4, torch.Generator().manual_seed(2)).double()
    y = torch.tensor([0, 3, 1, 7])
    profile = paths(model, x, y)
    chain = ds.Chain.from_module(model, None, example=x)
    Js, states = step_jacobians(chain, x)
    top = states[-2].detach().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(chain[-1](top), y, reduction="sum"), top)
    A = [J - torch.eye(5, dtype=torch.float64) for J in Js[1:-1]]  # blocks.0..2
    norms = []  # P_k^T g: the sum over the subsets of k branches, going down from the top block
    for k in range(4):
        total = torch.zeros(4, 5, dtype=torch.float64)
        for subset in itertools.product((False, True), repeat=3):
            if sum(subset) != k:
                continue
            v = g.unsqueeze(-1)
            for layer in reversed(range(3)):
                if subset[layer]:
                    v = A[layer].transpose(1, 2) @ v
            total += v.squeeze(-1)
        norms.append(float(total.norm(dim=1).mean()))
    assert profile.gradient_norm == pytest.approx(norms, rel=1e-8)
    assert profile.decomposition_error < 1e-10
    assert profile.loss == "cross-entropy"
    assert profile.count_share == pytest.approx([1 / 8, 3 / 8, 3 / 8, 1 / 8])
    assert profile.n_paths == 8


@pytest.mark.parametrize("name", ["resnet_mlp", "resnet20", "transformer_preln"])
def test_profiles_are_well_formed_and_the_model_untouched(name):
    model = tiny(name)
    snap = snapshot(model)
    p = paths(model)
    assert unchanged(model, snap)
    L = len(p.blocks)
    assert L >= 2 and len(p.gradient_share) == L + 1
    assert sum(p.gradient_share) == pytest.approx(1.0)
    assert sum(p.count_share) == pytest.approx(1.0)
    assert 0 <= p.effective_depth <= L
    assert p.decomposition_error < 1e-4  # float32 states; the sum of the parts is the gradient
    lo, hi = p.effective_range
    assert 0 <= lo <= hi <= L and sum(p.gradient_share[lo : hi + 1]) >= 0.9 - 1e-9


def test_resnet20_transition_blocks_are_not_counted_as_branches():
    model = tiny("resnet20")
    p = paths(model)
    lay = ds.design.layout(model, model.example_input(2))
    transitions = [s.name for s in lay.sites if not s.shape_preserving]
    assert transitions and not set(transitions) & set(p.blocks)


def test_effective_range_is_the_narrowest_window():
    assert effective_range(np.array([0.05, 0.5, 0.4, 0.05])) == (1, 2)
    assert effective_range(np.array([1.0, 0.0, 0.0])) == (0, 0)
    assert effective_range(np.array([0.3, 0.3, 0.4]), mass=1.0) == (0, 2)


def test_a_plain_net_has_no_paths_to_count():
    with pytest.raises(ds.NoBlocksError, match="no residual"):
        paths(tiny("plain_mlp"))


def test_shorter_nets_have_shorter_effective_depth():
    """Binomial sanity: a deeper stack of the same blocks carries its gradient on longer paths."""
    short = paths(tiny("resnet_mlp", depth=2, width=8, alpha=0.5))
    deep = paths(tiny("resnet_mlp", depth=8, width=8, alpha=0.5))
    assert deep.effective_depth > short.effective_depth
    assert math.isfinite(deep.effective_depth)
