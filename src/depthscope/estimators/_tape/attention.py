"""Rules for softmax, log-softmax and scaled-dot-product attention.

Each rule has the signature of `rules.Rule` and returns a `Linearization`. With ``P = softmax(S)``
along a dimension, ``dP = P * (dS - sum(P * dS))``: the Jacobian ``diag(P) - P P^T`` is symmetric,
so J^T is the same map. Attention ``out = softmax(Q K^T * scale + mask) V`` is linearised from the
primal probabilities ``P``, computed once at the recorded input:

* J: ``dS = (dQ K^T + Q dK^T) * scale``, ``d out = dP V + P dV``;
* J^T u: ``dV = P^T u``, ``dP = u V^T``, ``dS = P * (dP - sum(P * dP))``, ``dQ = dS K * scale``,
  ``dK = dS^T Q * scale``.

Every SDPA kernel (math, flash, memory-efficient, cuDNN) computes the same function, so one rule
covers them all and no double backward is ever needed. Tangents carry a leading dimension P that
broadcasts against the primal tensors in the matmuls.
"""

from __future__ import annotations

import math

import torch

from depthscope.estimators._tape.broadcast import sum_to
from depthscope.estimators._tape.calls import arg
from depthscope.estimators._tape.linearization import Linearization, Unsupported

Tensor = torch.Tensor


def _softmax_dim(args, kwargs, ndim: int) -> int:
    dim = arg(args, kwargs, 1, "dim")
    if not isinstance(dim, int):
        raise Unsupported("softmax without an explicit dim")
    return dim % ndim + 1  # in the tangent, which has a leading dimension


def _softmax_map(p: Tensor, dim: int):
    """t -> P * (t - sum(P * t)) along ``dim`` of the tangent; ``p`` has no leading dimension."""

    def apply(t: Tensor) -> Tensor:
        pt = p * t
        return pt - p * pt.sum(dim, keepdim=True)

    return apply


def softmax_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("softmax")
    dim = _softmax_dim(args, kwargs, args[0].ndim)
    in_dtype = args[0].dtype
    apply = _softmax_map(out.detach(), dim)  # symmetric Jacobian: J^T = J
    return Linearization.fresh(lambda ts: apply(ts[0]), lambda u: [apply(u).to(in_dtype)])


def log_softmax_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("log_softmax")
    dim = _softmax_dim(args, kwargs, args[0].ndim)
    in_dtype = args[0].dtype
    p = out.detach().exp()

    def jvp(ts):  # dy = t - sum(P * t)
        t = ts[0]
        return t - (p * t).sum(dim, keepdim=True)

    def vjp(u):  # J^T u = u - P sum(u)
        return [(u - p * u.sum(dim, keepdim=True)).to(in_dtype)]

    return Linearization.fresh(jvp, vjp)


def _repeat_heads(t: Tensor, rep: int) -> Tensor:
    """Grouped-query attention: each key/value head serves ``rep`` query heads (dim -3)."""
    return t if rep == 1 else t.repeat_interleave(rep, dim=-3)


def _sum_heads(t: Tensor, rep: int) -> Tensor:
    """The transpose of `_repeat_heads`: the cotangents of the query heads a key head serves, summed."""
    return t if rep == 1 else t.unflatten(-3, (t.shape[-3] // rep, rep)).sum(-3)


def sdpa_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)``
    with q: (..., L, E), k: (..., S, E), v: (..., S, Ev); linear in (q, k, v) jointly at the
    recorded input. The mask is a constant (boolean: keep where True; float: added to the scores)."""
    if any(i > 2 for i in tracked):
        raise Unsupported("attention mask that depends on the input")
    q, k, v = (arg(args, kwargs, i, n).detach() for i, n in enumerate(("query", "key", "value")))
    mask = arg(args, kwargs, 3, "attn_mask")
    if isinstance(mask, Tensor) and id(mask) in ids:
        raise Unsupported("attention mask that depends on the input")
    if arg(args, kwargs, 4, "dropout_p", 0.0) > 0:
        raise Unsupported("attention dropout")
    causal = arg(args, kwargs, 5, "is_causal", False)
    scale = arg(args, kwargs, 6, "scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    rep = q.shape[-3] // k.shape[-3] if arg(args, kwargs, 7, "enable_gqa", False) and q.ndim >= 3 else 1
    shapes = {0: q.shape, 1: k.shape, 2: v.shape}
    k, v = _repeat_heads(k, rep), _repeat_heads(v, rep)
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        s = s.masked_fill(~keep, float("-inf"))
    if isinstance(mask, Tensor):
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    p = torch.softmax(s, dim=-1)
    pt, kt, vt = p.transpose(-2, -1), k.transpose(-2, -1), v.transpose(-2, -1)
    slot = {i: j for j, i in enumerate(tracked)}
    dsoftmax = _softmax_map(p, -1)  # symmetric: the same map for J and J^T

    def jvp(ts):
        ds = None
        if 0 in slot:
            ds = ts[slot[0]] @ kt
        if 1 in slot:
            term = q @ _repeat_heads(ts[slot[1]], rep).transpose(-2, -1)
            ds = term if ds is None else ds + term
        total = None
        if ds is not None:
            total = dsoftmax(ds * scale) @ v
        if 2 in slot:
            term = p @ _repeat_heads(ts[slot[2]], rep)
            total = term if total is None else total + term
        return total.expand(total.shape[0], *out.shape).clone() if total.shape[1:] != out.shape else total

    def vjp(u):
        cots: dict[int, Tensor] = {}
        if 2 in slot:
            cots[2] = _sum_heads(pt @ u, rep)
        if 0 in slot or 1 in slot:
            ds = dsoftmax(u @ vt) * scale
            if 0 in slot:
                cots[0] = ds @ k
            if 1 in slot:
                cots[1] = _sum_heads(ds.transpose(-2, -1) @ q, rep)
        return [sum_to(cots[i], shapes[i]) for i in tracked]

    return Linearization.fresh(jvp, vjp)
