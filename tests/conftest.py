"""Shared test settings.

Tests run single-threaded: tiny tensors on a busy 2-core machine run hundreds of times slower with
two torch threads contending (measured: 8.3 s against 0.025 s for one small forward pass).
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
