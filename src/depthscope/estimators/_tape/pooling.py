"""The rule for max-pooling: the selection of each window's argmax, a gather.

The rule has the signature of `rules.Rule` and returns a `Linearization`. At the recorded input
each output entry copies one input entry (the one torch's own backward credits, ties included);
J v gathers those entries of the tangent, J^T u scatter-adds the cotangent back to them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depthscope.estimators._tape.calls import arg
from depthscope.estimators._tape.linearization import Linearization, Unsupported

Tensor = torch.Tensor

# The same pooling with its argmax returned, by spatial rank.
WITH_INDICES = {1: F.max_pool1d_with_indices, 2: F.max_pool2d_with_indices, 3: F.max_pool3d_with_indices}
MAX_POOLS = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}


def max_pool_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("max-pooling")
    d = MAX_POOLS[func]
    x = args[0].detach()
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    defaults = (None, None, 0, 1, False)
    params = [arg(args, kwargs, i + 1, n, dflt) for i, (n, dflt) in enumerate(zip(names, defaults))]
    _, idx = WITH_INDICES[d](x, *params)  # idx: (..., *out_spatial) into the flattened input window
    lead = x.shape[:-d]
    in_shape, out_shape = x.shape, idx.shape
    flat_idx = idx.flatten(-d)  # (..., n_out)

    def jvp(ts):
        t = ts[0].flatten(-d)  # (P, ..., n_in)
        i = flat_idx.expand(t.shape[0], *flat_idx.shape)
        return t.gather(-1, i).reshape(t.shape[0], *out_shape)

    def vjp(u):
        P = u.shape[0]
        uf = u.flatten(-d)
        z = torch.zeros(P, *lead, in_shape[-d:].numel(), dtype=u.dtype)
        z.scatter_add_(-1, flat_idx.expand(P, *flat_idx.shape), uf)
        return [z.reshape(P, *in_shape)]

    return Linearization.fresh(jvp, vjp)
