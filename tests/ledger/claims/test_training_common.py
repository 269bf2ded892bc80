"""Helpers shared by claims R1, R3, R10: the row cosine on parallel, orthogonal, opposite and zero rows."""

import torch

from depthscope.ledger.claims import _training_common as common


def test_row_cosine_parallel_orthogonal_opposite_and_zero_rows():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(common._row_cosine(a, b), torch.tensor([1.0, 0.0, -1.0, 0.0]))
