"""Helpers shared by claims R1, R3 and R10 (seed 000): the setting's dataset and row cosines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from depthscope.ledger._data import Dataset, load_dataset

COSINE_EPS = 1e-30  # norm floor in cosines: a zero vector has cosine 0 with anything


def _data(setting: Mapping[str, Any], seed: int) -> Dataset:
    """The setting's dataset, cut to ``n_train`` / ``n_test`` examples (all of it when None)."""
    data = load_dataset(setting["dataset"])
    n_train = setting["n_train"] or len(data.x_train)
    n_test = setting["n_test"] or len(data.x_test)
    if n_train >= len(data.x_train) and n_test >= len(data.x_test):
        return data
    return data.subset(n_train, n_test, seed=seed)


def _row_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine between matching rows: a, b (n, d) -> (n,); a zero row gives 0."""
    return nn.functional.cosine_similarity(a, b, dim=1, eps=COSINE_EPS)
