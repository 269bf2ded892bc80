"""Claim J6: the path decomposition against subset enumeration, lesioned blocks, effective depth, and every branch of the judge."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import SEED, tiny_setting
from torch import nn

import depthscope as ds
from depthscope.ledger.claims import j6_lesion as j6


def test_j6_path_decomposition_matches_subset_enumeration():
    """Linear branches: A_l is constant, so P_k = sum over k-subsets of ordered products, enumerated."""
    torch.manual_seed(SEED)
    L, w = 3, 4
    model = ds.create_model("resnet_mlp", depth=L, width=w, alpha=0.6, activation="linear", in_dim=64).double()
    x = torch.rand(3, 64, dtype=torch.float64)
    y = torch.tensor([1, 4, 7])
    norms, error = j6._path_gradients(model, x, y)
    assert error < 1e-12
    A = [(b.alpha * b.fc2.weight @ b.fc1.weight).detach() for b in model.blocks]  # J_F of a linear branch
    with torch.no_grad():
        h = model.stem(x)
        for b in model.blocks:
            h = b(h)
    top = h.clone().requires_grad_(True)
    (gL,) = torch.autograd.grad(nn.functional.cross_entropy(model.head(top), y, reduction="sum"), top)
    for k in range(L + 1):
        P = torch.zeros(w, w, dtype=torch.float64)
        for subset in itertools.combinations(range(L), k):
            M = torch.eye(w, dtype=torch.float64)
            for layer in subset:
                M = A[layer] @ M
            P += M
        expected = (gL.double() @ P).norm(dim=1).mean()
        assert norms[k] == pytest.approx(float(expected), rel=1e-10)


def test_j6_deleted_blocks_count_for_no_path_and_small_branches_give_short_paths():
    torch.manual_seed(SEED)
    model = ds.create_model("resnet_mlp", depth=4, width=6, alpha=0.01, in_dim=64)
    x, y = torch.rand(5, 64), torch.tensor([0, 1, 2, 3, 4])
    norms, error = j6._path_gradients(model, x, y)
    assert len(norms) == 5 and error < 1e-5
    assert j6._effective_depth(norms) < 0.1  # the identity path carries almost everything
    pruned, _ = j6._path_gradients(j6._without_block(model, 2), x, y)
    assert len(pruned) == 4


def test_j6_effective_depth_and_judge_branches():
    assert j6._effective_depth(np.array([1.0, 0.0, 1.0])) == pytest.approx(1.0)
    s = tiny_setting("J6")
    run = {
        "seed": 0,
        "residual": {"accuracy": 0.9, "lesion_accuracy": [0.88, 0.87, 0.89, 0.88]},
        "plain": {"accuracy": 0.9, "lesion_accuracy": [0.1] * 4},
        "paths": {"decomposition_error": 1e-7, "effective_depth": 1.5, "effective_depth_pruned": [1.2] * 4},
    }
    assert j6._judge_j6({"runs": [run]}, s).verdict == "confirmed"
    weak = {**run, "residual": {"accuracy": 0.9, "lesion_accuracy": [0.6, 0.89, 0.89, 0.89]}}
    assert j6._judge_j6({"runs": [weak]}, s).verdict == "qualified"
    broken = {**run, "residual": {"accuracy": 0.9, "lesion_accuracy": [0.3] * 4}}
    assert j6._judge_j6({"runs": [broken]}, s).verdict == "refuted"
