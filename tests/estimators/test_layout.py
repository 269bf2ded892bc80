"""The memory order tangents live in: channels-last for images, row-major otherwise."""

import torch

from depthscope.estimators import as_native, flatten_native


def test_native_order_is_channels_last_for_images_and_round_trips():
    flat = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 60)
    t = as_native(flat, (3, 4, 5))  # (2, C=3, H=4, W=5), stored (H, W, C)
    assert t.shape == (2, 3, 4, 5) and t.is_contiguous(memory_format=torch.channels_last)
    assert t.data_ptr() == flat.data_ptr()  # a view
    assert float(t[0, 1, 0, 0]) == 1.0 and float(t[0, 0, 0, 1]) == 3.0  # channels are innermost
    assert torch.equal(flatten_native(t, 3), flat)
    assert torch.equal(flatten_native(t.contiguous(), 3), flat)  # any layout, same order
    assert torch.equal(as_native(flat, (60,)), flat) and torch.equal(flatten_native(flat.reshape(2, 6, 10), 2), flat)
