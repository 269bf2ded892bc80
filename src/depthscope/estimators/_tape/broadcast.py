"""Broadcasting a tangent against an output, and its transpose (summing a cotangent back)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def lift(v: Tensor, ndim_out: int) -> Tensor:
    """View a tangent ``(P, *s)`` so it broadcasts against ``(P, *s_out)`` with ``len(s_out) = ndim_out``."""
    extra = ndim_out - (v.ndim - 1)
    if extra <= 0:
        return v
    return v.reshape(v.shape[0], *([1] * extra), *v.shape[1:])


def sum_to(u: Tensor, shape: torch.Size) -> Tensor:
    """Transpose of broadcasting ``shape`` to ``u.shape[1:]``: sum over the broadcast dimensions."""
    if tuple(u.shape[1:]) == tuple(shape):
        return u
    extra = u.ndim - 1 - len(shape)
    if extra > 0:
        u = u.sum(dim=tuple(range(1, 1 + extra)))
    dims = tuple(i + 1 for i, n in enumerate(shape) if n == 1 and u.shape[i + 1] != 1)
    if dims:
        u = u.sum(dim=dims, keepdim=True)
    return u
