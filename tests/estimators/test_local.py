"""Probe vectors and the memory order tangents live in."""

import torch

from depthscope.estimators._layout import as_native, flatten_native
from depthscope.estimators._local import rademacher


def test_rademacher_signs_are_fair_and_independent(gen):
    v = rademacher((64, 3, 1001), gen, torch.float32)  # a length that is not a multiple of 8
    assert v.shape == (64, 3, 1001) and v.dtype == torch.float32
    assert set(v.unique().tolist()) == {-1.0, 1.0}
    n = v.numel()
    assert abs(float(v.mean())) < 4 / n**0.5  # four standard deviations
    # Neighbours come from the same random byte: their products must average zero too, at every
    # offset within a byte.
    flat = v.flatten()
    for lag in range(1, 9):
        assert abs(float((flat[:-lag] * flat[lag:]).mean())) < 4 / n**0.5
    assert not torch.equal(rademacher((8,), gen, torch.float64), rademacher((8,), gen, torch.float64))


def test_native_order_is_channels_last_for_images_and_round_trips():
    flat = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 60)
    t = as_native(flat, (3, 4, 5))  # (2, C=3, H=4, W=5), stored (H, W, C)
    assert t.shape == (2, 3, 4, 5) and t.is_contiguous(memory_format=torch.channels_last)
    assert t.data_ptr() == flat.data_ptr()  # a view
    assert float(t[0, 1, 0, 0]) == 1.0 and float(t[0, 0, 0, 1]) == 3.0  # channels are innermost
    assert torch.equal(flatten_native(t, 3), flat)
    assert torch.equal(flatten_native(t.contiguous(), 3), flat)  # any layout, same order
    assert torch.equal(as_native(flat, (60,)), flat) and torch.equal(flatten_native(flat.reshape(2, 6, 10), 2), flat)
