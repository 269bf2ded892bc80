"""Rules for calls that move entries without changing them: reshapes, basic indexing, constant
padding, permutations and transposes.

Each rule has the signature of `rules.Rule` and returns a `Linearization`: the tangent goes through
the same movement, the cotangent through its inverse (or its transpose: zeros where indexing or
padding dropped or added entries). Indexing and padding that are not of this kind fall back to
`generic.generic_rule`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depthscope.estimators._tape.calls import arg
from depthscope.estimators._tape.generic import generic_rule
from depthscope.estimators._tape.linearization import Linearization, Unsupported

T = torch.Tensor  # the method table: T.view is Tensor.view

# Pure reshapes: the element order is kept, only the shape changes.
RESHAPES = {
    T.view,
    T.reshape,
    torch.reshape,
    T.flatten,
    torch.flatten,
    T.unflatten,
    torch.unflatten,
    T.squeeze,
    torch.squeeze,
    T.unsqueeze,
    torch.unsqueeze,
    T.contiguous,
    T.clone,
    torch.clone,
    T.view_as,
    T.reshape_as,
}


def reshape_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0] or (func in (T.view, T.reshape) and len(args) > 1 and isinstance(args[1], torch.dtype)):
        raise Unsupported("reshape by dtype")
    in_shape, out_shape = args[0].shape, out.shape
    return Linearization(
        lambda ts: ts[0].reshape(ts[0].shape[0], *out_shape), lambda u: [u.reshape(u.shape[0], *in_shape)]
    )


def _basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


def getitem_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0] or not _basic_index(args[1]):
        return generic_rule(func, args, kwargs, out, tracked, ids)
    index = (slice(None),) + (args[1] if isinstance(args[1], tuple) else (args[1],))
    in_shape = args[0].shape

    def vjp(u):
        z = torch.zeros(u.shape[0], *in_shape, dtype=u.dtype)
        z[index] = u
        return [z]

    return Linearization(lambda ts: ts[0][index], vjp)


def pad_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    pad = arg(args, kwargs, 1, "pad")
    mode = arg(args, kwargs, 2, "mode", "constant")
    if tracked != [0] or mode != "constant" or any(p < 0 for p in pad):
        return generic_rule(func, args, kwargs, out, tracked, ids)
    x = args[0]
    index = [slice(None)] * (x.ndim + 1)
    for j in range(len(pad) // 2):
        dim = x.ndim - j  # in the tangent, which has one more leading dimension
        index[dim] = slice(pad[2 * j], out.shape[dim - 1] - pad[2 * j + 1])
    index = tuple(index)
    return Linearization(lambda ts: F.pad(ts[0], pad), lambda u: [u[index]])


def permute_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("permute")
    nd = args[0].ndim
    if func in (T.permute, torch.permute):
        dims = (
            args[1:] if len(args) > 2 or isinstance(arg(args, kwargs, 1, "dims"), int) else arg(args, kwargs, 1, "dims")
        )
        perm = [d % nd for d in dims]
    else:  # transpose(d0, d1)
        d0, d1 = arg(args, kwargs, 1, "dim0") % nd, arg(args, kwargs, 2, "dim1") % nd
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    fwd = [0] + [p + 1 for p in perm]
    inv = [0] * (nd + 1)
    for i, p in enumerate(fwd):
        inv[p] = i
    return Linearization(lambda ts: ts[0].permute(fwd), lambda u: [u.permute(inv)])


# Casts between floating dtypes (and to the same device): the tangent is cast the same way.
CASTS = {T.to, T.type_as, T.float, T.double, T.half, T.bfloat16, T.type}


def cast_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("cast to the dtype of a tensor that depends on the input")
    x = args[0]
    if out.device != x.device:
        raise Unsupported("a cast to another device")
    in_dtype, out_dtype = x.dtype, out.dtype
    return Linearization(lambda ts: ts[0].to(out_dtype), lambda u: [u.to(in_dtype)])


# Calls that cut a tensor into pieces along one dimension, each piece a view of the input.
SPLITS = {T.split, torch.split, T.chunk, torch.chunk, T.unbind, torch.unbind, T.tensor_split, torch.tensor_split}


def split_rule(func, args, kwargs, outs, tracked) -> list[Linearization]:
    """One `Linearization` per piece: the piece's part of the tangent, and zeros elsewhere for the
    cotangent. Pieces are consecutive along ``dim`` (unbind: one index each)."""
    if tracked != [0]:
        raise Unsupported("split of a tensor selected by the input")
    x = args[0]
    if func in (T.unbind, torch.unbind):
        dim = arg(args, kwargs, 1, "dim", 0) % x.ndim
        return [_piece(x.shape, dim, i, None) for i in range(len(outs))]
    dim = arg(args, kwargs, 2, "dim", 0) % x.ndim
    pieces, start = [], 0
    for o in outs:
        pieces.append(_piece(x.shape, dim, start, o.shape[dim]))
        start += o.shape[dim]
    if start != x.shape[dim]:
        raise Unsupported("pieces that do not tile the input")
    return pieces


def _piece(in_shape: torch.Size, dim: int, start: int, length: int | None) -> Linearization:
    """Entries ``start:start + length`` along ``dim`` (or index ``start``, the dim dropped, where
    ``length`` is None); ``dim`` counts without the tangent's leading dimension."""
    d = dim + 1

    def jvp(ts):
        return ts[0].select(d, start) if length is None else ts[0].narrow(d, start, length)

    def vjp(u):
        z = torch.zeros(u.shape[0], *in_shape, dtype=u.dtype)
        (z.select(d, start) if length is None else z.narrow(d, start, length)).copy_(u)
        return [z]

    return Linearization(jvp, vjp, vjp_fresh=True)
