"""Rules for the linear calls that every transformer and CNN makes on its way: means and sums over
dimensions, global average pooling, concatenation and stacking.

Each rule has the signature of `rules.Rule` and returns a `Linearization`. The tangent goes through
the same call with its dimensions shifted by the leading tangent dimension P; the cotangent through
the adjoint: a broadcast (divided by the count for a mean) or a split. These calls are linear, so
the recorded input does not enter. They used to go through `generic.generic_rule`, a vmapped
functorch jvp per replay; with these rules a Llama probe (an RMSNorm mean and two rotary
concatenations per layer) fell from 43.0 to 26.1 forward+backward passes with sigma_min=False
(benchmarks/probe_real_models.py). Forms these rules do not cover (named dimensions, pooling to
sizes other than 1, ragged concatenations) still go to the generic rule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depthscope.estimators._tape.calls import arg
from depthscope.estimators._tape.generic import generic_rule
from depthscope.estimators._tape.linearization import Linearization

Tensor = torch.Tensor
T = torch.Tensor  # the method table: T.mean is Tensor.mean

MEANS = {torch.mean, T.mean}
SUMS = {torch.sum, T.sum}
CATS = {torch.cat, torch.concat, torch.concatenate}
STACKS = {torch.stack}
# Adaptive average pooling by spatial rank; to output size 1 it is the mean over those dimensions.
ADAPTIVE_AVG_POOLS = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3}


def _reduced_dims(dim, nd: int) -> tuple[int, ...] | None:
    """``dim`` of a reduction over an ``nd``-dimensional input as sorted non-negative ints (None:
    a form this rule does not handle, such as named dimensions)."""
    if dim is None:
        return tuple(range(nd))
    items = (dim,) if isinstance(dim, int) else tuple(dim)
    if not items:  # torch reads an empty dim list as "every dimension"
        return tuple(range(nd))
    if not all(isinstance(d, int) for d in items) or nd == 0:
        return None
    return tuple(sorted({d % nd for d in items}))


def _reduction(
    dims: tuple[int, ...],
    keepdim: bool,
    in_shape: torch.Size,
    count: int | None,
    in_dtype: torch.dtype,
    out_dtype: torch.dtype | None,
) -> Linearization:
    """The linearisation of a sum (``count`` None) or a mean over ``dims`` of an input of ``in_shape``
    and ``in_dtype``, cast to ``out_dtype`` where given (the call's ``dtype=``)."""
    shifted = tuple(d + 1 for d in dims)
    scale = None if count is None else 1.0 / count

    def jvp(ts):
        t = ts[0]
        out = t.sum(shifted, keepdim=keepdim, dtype=out_dtype) if count is None else t.mean(shifted, keepdim=keepdim)
        return out if out_dtype is None else out.to(out_dtype)

    def vjp(u):
        if not keepdim:
            for d in shifted:
                u = u.unsqueeze(d)
        if scale is not None:
            u = u * scale
        return [u.to(in_dtype).expand(u.shape[0], *in_shape)]

    return Linearization(jvp, vjp, jvp_fresh=True)


def reduction_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    """``mean``/``sum`` over dimensions (``dim`` an int, a list or None; ``keepdim``; ``dtype``)."""
    x = args[0]
    dims = _reduced_dims(arg(args, kwargs, 1, "dim"), x.ndim)
    if tracked != [0] or dims is None or any(isinstance(a, Tensor) for a in args[1:]):
        return generic_rule(func, args, kwargs, out, tracked, ids)
    keepdim = bool(arg(args, kwargs, 2, "keepdim", False))
    dtype = arg(args, kwargs, 3, "dtype")
    count = None if func in SUMS else max(1, x.shape.numel() // max(1, out.shape.numel()))
    return _reduction(dims, keepdim, x.shape, count, x.dtype, dtype)


def adaptive_avg_pool_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    """Global average pooling (every output size 1): the mean over the pooled dimensions, kept."""
    d = ADAPTIVE_AVG_POOLS[func]
    x = args[0]
    if tracked != [0] or any(n != 1 for n in out.shape[-d:]):
        return generic_rule(func, args, kwargs, out, tracked, ids)
    dims = tuple(range(x.ndim - d, x.ndim))
    count = max(1, x.shape[-d:].numel())
    return _reduction(dims, True, x.shape, count, x.dtype, None)


def cat_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    """``cat``/``stack`` of a list whose pieces may be tracked (tangents) or constant (zero tangent).

    The tracked pieces arrive in list order, a piece listed twice once per listing (the recorder's
    ``Op.ins``); the cotangent of each is its slice of the output's cotangent.
    """
    pieces = arg(args, kwargs, 0, "tensors")
    dim = arg(args, kwargs, 1, "dim", 0)
    if not isinstance(pieces, (list, tuple)) or not isinstance(dim, int) or not pieces:
        return generic_rule(func, args, kwargs, out, tracked, ids)
    nd = pieces[0].ndim
    if any(not isinstance(p, Tensor) or p.ndim != nd for p in pieces) or nd == 0:
        return generic_rule(func, args, kwargs, out, tracked, ids)
    stack = func in STACKS
    d = dim % (nd + 1 if stack else nd) + 1  # in the tangent, which has one more leading dimension
    is_tracked = [id(p) in ids for p in pieces]
    shapes = [p.shape for p in pieces]
    dtypes = [p.dtype for p in pieces if id(p) in ids]
    sizes = [1 if stack else s[d - 1] for s in shapes]
    join = torch.stack if stack else torch.cat

    def jvp(ts):
        it = iter(ts)
        P, dt = ts[0].shape[0], ts[0].dtype
        parts = [next(it) if tr else ts[0].new_zeros(()).expand(P, *s) for tr, s in zip(is_tracked, shapes)]
        return join([p.to(dt) for p in parts], d)

    def vjp(u):
        slices = u.split(sizes, d)
        kept = [s.squeeze(d) if stack else s for s, tr in zip(slices, is_tracked) if tr]
        return [s.to(dt) for s, dt in zip(kept, dtypes)]

    return Linearization(jvp, vjp, jvp_fresh=True)
