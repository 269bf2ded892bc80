"""The memory order that tangents of a state live in: channels-last for images, row-major otherwise.

Tapes run 2-d convolutions channels-last (`depthscope.estimators._tape`). A tangent stored in that
order goes through a whole chain without a layout copy at any convolution; a flat vector that
Lanczos or a QR works on is then a view of it, not a copy. Any fixed order of the n entries of a
state is as good as another for norms, inner products and QR, as long as the vectors of one space
share it: these helpers give that order, and `flatten_native` copies a tensor into it when it is
stored otherwise.
"""

from __future__ import annotations

import torch

# Per-example state (C, H, W): stored as (H, W, C).
_IMAGE_NDIM = 3


def as_native(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """View ``flat: (..., n)`` as ``(..., *shape)`` with n = prod(shape), reading it in native order."""
    if len(shape) != _IMAGE_NDIM:
        return flat.unflatten(-1, shape)
    c, h, w = shape
    return flat.unflatten(-1, (h, w, c)).movedim(-1, -3)


def flatten_native(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``t: (..., *shape)`` with ``len(shape) = ndim`` as ``(..., n)`` in native order (a view
    when t is stored that way, a copy otherwise)."""
    if ndim != _IMAGE_NDIM:
        return t.flatten(-ndim) if ndim > 0 else t.unsqueeze(-1)
    return t.movedim(-3, -1).flatten(-3)
