"""Rules for LayerNorm and RMSNorm over their trailing (normalised) dimensions.

Each rule has the signature of `rules.Rule` and returns a `Linearization`. With ``n`` entries per
normalised group, ``sigma = sqrt(var(x) + eps)`` and ``xhat = (x - mean(x)) / sigma``:

* LayerNorm: ``dy = gamma * (dx - mean(dx) - xhat * mean(xhat * dx)) / sigma``;
* RMSNorm: with ``r = rsqrt(mean(x^2) + eps)`` and ``xr = x * r``,
  ``dy = gamma * r * (dx - xr * mean(xr * dx))``.

In both the map inside ``gamma * (...)`` is symmetric (a per-group scalar times identity minus
rank-one projections), so J^T u applies it to ``gamma * u``. The bias drops out.
"""

from __future__ import annotations

import torch

from depthscope.estimators._tape.calls import arg
from depthscope.estimators._tape.linearization import Linearization, Unsupported

Tensor = torch.Tensor


def _normalised_dims(x: Tensor, shape) -> tuple[int, ...]:
    """The trailing dims of the tangent (leading dimension included) that are normalised."""
    n = 1 if isinstance(shape, int) else len(shape)
    return tuple(range(x.ndim + 1 - n, x.ndim + 1))


def _gamma(weight) -> Tensor | None:
    return None if weight is None else weight.detach()


def _symmetric(apply, gamma: Tensor | None, in_dtype: torch.dtype) -> Linearization:
    """J = diag(gamma) A with A symmetric: J v = gamma * A v, J^T u = A (gamma * u)."""

    def jvp(ts):
        y = apply(ts[0])
        return y if gamma is None else y.mul_(gamma)

    def vjp(u):
        return [apply(u if gamma is None else u * gamma).to(in_dtype)]

    return Linearization.fresh(jvp, vjp)


def layer_norm_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("layer norm with a weight that depends on the input")
    x = args[0].detach()
    shape = arg(args, kwargs, 1, "normalized_shape")
    eps = arg(args, kwargs, 4, "eps", 1e-5)
    dims = _normalised_dims(x, shape)
    xd = tuple(d - 1 for d in dims)
    mu = x.mean(xd, keepdim=True)
    inv_sigma = torch.rsqrt(x.var(xd, unbiased=False, keepdim=True) + eps)
    xhat = (x - mu) * inv_sigma

    def apply(t: Tensor) -> Tensor:
        return (t - t.mean(dims, keepdim=True) - xhat * (xhat * t).mean(dims, keepdim=True)) * inv_sigma

    return _symmetric(apply, _gamma(arg(args, kwargs, 2, "weight")), args[0].dtype)


def rms_norm_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("RMS norm with a weight that depends on the input")
    x = args[0].detach()
    shape = arg(args, kwargs, 1, "normalized_shape")
    eps = arg(args, kwargs, 3, "eps")
    eps = torch.finfo(x.dtype).eps if eps is None else eps  # F.rms_norm's own default
    dims = _normalised_dims(x, shape)
    r = torch.rsqrt(x.pow(2).mean(tuple(d - 1 for d in dims), keepdim=True) + eps)
    xr = x * r

    def apply(t: Tensor) -> Tensor:
        return (t - xr * (xr * t).mean(dims, keepdim=True)) * r

    return _symmetric(apply, _gamma(arg(args, kwargs, 2, "weight")), args[0].dtype)
