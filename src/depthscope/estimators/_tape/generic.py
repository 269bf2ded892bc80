"""The fallback rule: one call linearised by ``torch.func``, for the linear and multilinear
functions in `GENERIC` (pooling, means and sums, concatenation, matmul, einsum, ...).

Slower than a dedicated rule (a vmapped functorch jvp or vjp per replay) but exact for any
function that is linear in each tensor argument and deterministic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depthscope.estimators._tape.linearization import Linearization, Unsupported

Tensor = torch.Tensor
T = torch.Tensor  # the method table: T.mean is Tensor.mean


def generic_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    """Linearise one call with torch.func: jvp (forward mode) and vjp, vmapped over the tangents.

    Only for the functions in `GENERIC`, which are linear or multilinear in their tensor
    arguments and deterministic.
    """
    flat, spec = torch.utils._pytree.tree_flatten((args, kwargs))
    slots = [i for i, a in enumerate(flat) if isinstance(a, Tensor) and id(a) in ids]
    primals = tuple(flat[i].detach() for i in slots)

    def g(*ts):
        vals = list(flat)
        for i, t in zip(slots, ts):
            vals[i] = t
        a, kw = torch.utils._pytree.tree_unflatten(vals, spec)
        return func(*a, **kw)

    try:
        _, vjp_fn = torch.func.vjp(g, *primals)
    except RuntimeError as err:
        raise Unsupported(f"{getattr(func, '__name__', func)}: {err}") from err

    def jvp(ts):
        return torch.vmap(lambda *t: torch.func.jvp(g, primals, t)[1])(*ts)

    def vjp(u):
        return list(torch.vmap(vjp_fn)(u))

    return Linearization(jvp, vjp)


GENERIC = {
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    torch.mean,
    T.mean,
    torch.sum,
    T.sum,
    torch.cat,
    torch.concat,
    torch.stack,
    T.expand,
    T.expand_as,
    torch.matmul,
    T.matmul,
    T.__matmul__,
    T.__rmatmul__,
    torch.mm,
    T.mm,
    torch.bmm,
    T.bmm,
    torch.einsum,
    T.repeat,
    torch.roll,
    T.roll,
    T.narrow,
    torch.narrow,
    T.movedim,
    torch.movedim,
    F.interpolate,
}
