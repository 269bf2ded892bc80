"""Rules for matrix products and einsum: multilinear maps, linearised by the product rule.

Each rule has the signature of `rules.Rule` and returns a `Linearization`. For ``C = A @ B``:
``dC = dA B + A dB``, ``J^T u = (u B^T, A^T u)`` summed back over broadcast dimensions. For
``einsum(eq, X_1, ..., X_n)``: the tangent of a tracked operand takes its place with one more index
(the tangents' leading dimension), and the cotangent of operand i is the einsum of the output's
cotangent with the other operands, written to operand i's indices. Calls outside these forms
(1-d matmul operands, ellipsis, repeated or summed-away indices) go to `generic.generic_rule`,
whose vmapped functorch replay is ~100x slower on an attention block's products.
"""

from __future__ import annotations

import torch

from depthscope.estimators._tape.broadcast import sum_to
from depthscope.estimators._tape.generic import generic_rule
from depthscope.estimators._tape.linearization import Linearization

Tensor = torch.Tensor
T = torch.Tensor

MATMULS = {torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm}
EINSUMS = {torch.einsum}
# beta * input + alpha * (mat1 @ mat2): Hugging Face's Conv1D (GPT-2) projections, baddbmm scores.
ADD_MATMULS = {torch.addmm, T.addmm, torch.baddbmm, T.baddbmm}
TANGENT_INDEX = "Z"  # the tangents' leading dimension in rewritten einsum equations (not in any operand)


def matmul_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    a, b = args[0], args[1]
    if kwargs or len(args) != 2 or not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.ndim < 2 or b.ndim < 2:
        return generic_rule(func, args, kwargs, out, tracked, ids)
    a, b = a.detach(), b.detach()
    at, bt = a.transpose(-2, -1), b.transpose(-2, -1)
    slot = {i: j for j, i in enumerate(tracked)}

    def jvp(ts):
        total = ts[slot[0]] @ b if 0 in slot else None
        if 1 in slot:
            term = a @ ts[slot[1]]
            total = term if total is None else total + term
        return total

    def vjp(u):
        cots = {}
        if 0 in slot:
            cots[0] = sum_to(u @ bt, a.shape)
        if 1 in slot:
            cots[1] = sum_to(at @ u, b.shape)
        return [cots[i] for i in tracked]

    return Linearization.fresh(jvp, vjp)


def add_matmul_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    """``addmm(input, mat1, mat2, beta=1, alpha=1)`` and ``baddbmm``: the sum rule on the input,
    the product rule on the matrices."""
    if len(args) != 3 or set(kwargs) - {"beta", "alpha"}:
        return generic_rule(func, args, kwargs, out, tracked, ids)
    beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
    c, a, b = (x.detach() if isinstance(x, Tensor) else x for x in args)
    at, bt = a.transpose(-2, -1), b.transpose(-2, -1)
    slot = {i: j for j, i in enumerate(tracked)}
    nd = out.ndim

    def jvp(ts):
        total = ts[slot[1]] @ b if 1 in slot else None
        if 2 in slot:
            term = a @ ts[slot[2]]
            total = term if total is None else total + term
        if total is not None and alpha != 1:
            total = total * alpha
        if 0 in slot:
            t = ts[slot[0]]
            t = (t if beta == 1 else beta * t).reshape(t.shape[0], *([1] * (nd - t.ndim + 1)), *t.shape[1:])
            total = t.expand(t.shape[0], *out.shape).clone() if total is None else total + t
        return total

    def vjp(u):
        cots = {0: sum_to(u if beta == 1 else beta * u, c.shape) if 0 in slot else None}
        ua = u if alpha == 1 else alpha * u
        if 1 in slot:
            cots[1] = ua @ bt
        if 2 in slot:
            cots[2] = at @ ua
        return [cots[i] for i in tracked]

    return Linearization(jvp, vjp)


def einsum_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    eq = args[0] if isinstance(args[0], str) else None
    ops = list(args[1:]) if eq is not None else []
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = list(ops[0])
    if eq is None or kwargs or "->" not in eq or TANGENT_INDEX in eq:
        return generic_rule(func, args, kwargs, out, tracked, ids)
    lhs, rhs = eq.replace(" ", "").split("->")
    subs = lhs.split(",")
    if len(subs) != len(ops) or not all(isinstance(o, Tensor) for o in ops):
        return generic_rule(func, args, kwargs, out, tracked, ids)
    if "..." in eq:
        named = _name_ellipsis(subs, rhs, ops)
        if named is None:
            return generic_rule(func, args, kwargs, out, tracked, ids)
        subs, rhs = named
    positions = [i for i, o in enumerate(ops) if id(o) in ids]  # which operands carry tangents
    for i in positions:
        rest = set(rhs).union(*(subs[j] for j in range(len(ops)) if j != i))
        if len(set(subs[i])) != len(subs[i]) or not set(subs[i]) <= rest:
            return generic_rule(func, args, kwargs, out, tracked, ids)
    consts = [o.detach() for o in ops]
    z = TANGENT_INDEX

    def jvp(ts):
        total = None
        for i, t in zip(positions, ts):
            terms = [z + s if j == i else s for j, s in enumerate(subs)]
            operands = [t if j == i else c for j, c in enumerate(consts)]
            term = torch.einsum(f"{','.join(terms)}->{z}{rhs}", *operands)
            total = term if total is None else total + term
        return total

    def vjp(u):
        cots = []
        for i in positions:
            others = [j for j in range(len(ops)) if j != i]
            eq_i = ",".join([z + rhs, *(subs[j] for j in others)]) + f"->{z}{subs[i]}"
            cots.append(torch.einsum(eq_i, u, *(consts[j] for j in others)))
        return cots

    return Linearization.fresh(jvp, vjp)


def _name_ellipsis(subs: list[str], rhs: str, ops: list[Tensor]) -> tuple[list[str], str] | None:
    """The equation with ``...`` replaced by named indices (right-aligned across operands), or None
    where the ellipsis dimensions broadcast (sizes differ), whose transpose would need a sum."""
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXY" if c not in "".join(subs) + rhs]
    counts = [o.ndim - (len(s) - 3) if "..." in s else 0 for s, o in zip(subs, ops)]
    n = max(counts)
    if n > len(free) or "..." not in rhs:
        return None
    names = free[:n]
    sizes: dict[str, int] = {}
    for s, o, c in zip(subs, ops, counts):
        for name, size in zip(names[n - c :], o.shape[s.index(".") : s.index(".") + c] if c else ()):
            if sizes.setdefault(name, size) != size:
                return None
    new = [s.replace("...", "".join(names[n - c :])) for s, c in zip(subs, counts)]
    return new, rhs.replace("...", "".join(names))
