"""Rules for arithmetic: sums and differences (the sum rule), products and quotients by a constant
(the product rule), negation.

Each rule has the signature of `rules.Rule` and returns a `Linearization`. Operands may broadcast:
a tangent is lifted to the output's rank (`broadcast.lift`), a cotangent summed back to the
operand's shape (`broadcast.sum_to`).
"""

from __future__ import annotations

from typing import Any

import torch

from depthscope.estimators._tape.broadcast import lift, sum_to
from depthscope.estimators._tape.linearization import Linearization, Unsupported

Tensor = torch.Tensor
T = torch.Tensor  # the method table: T.add is Tensor.add

# Sums: (first operand coefficient, second operand coefficient) given alpha.
ADD = {torch.add, T.add, T.__add__, T.__radd__, T.add_, T.__iadd__}
SUB = {torch.sub, T.sub, T.__sub__, T.sub_, T.__isub__, torch.subtract, T.subtract}
RSUB = {T.__rsub__}


def sum_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    alpha = kwargs.get("alpha", 1)
    if len(args) > 2:
        raise Unsupported("add with a positional alpha")
    sign = 1 if func in ADD else -1
    coeffs = [1, sign * alpha] if func not in RSUB else [-1, 1]
    shapes = [args[i].shape for i in tracked]
    c = [coeffs[i] for i in tracked]
    nd = out.ndim

    def jvp(ts):
        total = None
        for ci, t in zip(c, ts):
            term = lift(t, nd) if ci == 1 else ci * lift(t, nd)
            total = term if total is None else total + term
        return total.expand(total.shape[0], *out.shape) if total.shape[1:] != out.shape else total

    def vjp(u):
        return [sum_to(u if ci == 1 else ci * u, s) for ci, s in zip(c, shapes)]

    if len(c) == 2 and c[0] == 1 and tuple(shapes[0]) == tuple(out.shape):
        # a + b allocates; and the first term may take the sum in place
        def inplace(ts):
            a, b = ts
            if torch.promote_types(a.dtype, b.dtype) != a.dtype:
                return None
            return a.add_(lift(b, nd), alpha=c[1])

        return Linearization(jvp, vjp, jvp_fresh=True, jvp_inplace=inplace)
    return Linearization(jvp, vjp)


MUL = {torch.mul, T.mul, T.__mul__, T.__rmul__, T.mul_, T.__imul__, torch.multiply, T.multiply}
DIV = {torch.div, T.div, T.__truediv__, T.div_, T.__itruediv__, torch.true_divide, T.true_divide}
_IN_PLACE = {T.mul_, T.__imul__, T.div_, T.__itruediv__}


def product_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    """a * b by the product rule, a / b with b constant; runs before the call (in-place safe)."""
    a, b = args[0], args[1]
    nd = out.ndim
    if func in DIV:
        if kwargs.get("rounding_mode") is not None or 1 in tracked:
            raise Unsupported("division by a tensor that depends on the input")
        b = _value_before_call(b, func)
        return Linearization(lambda ts: lift(ts[0], nd) / b, lambda u: [sum_to(u / b, a.shape)])
    # Each tracked operand's tangent is multiplied by the other operand's value before the call.
    partners = {0: _value_before_call(b, func), 1: _value_before_call(a, func)}
    shapes = {i: args[i].shape for i in tracked}

    def jvp(ts):
        total = None
        for i, t in zip(tracked, ts):
            term = lift(t, nd) * partners[i]
            total = term if total is None else total + term
        return total

    def vjp(u):
        return [sum_to(u * partners[i], shapes[i]) for i in tracked]

    return Linearization(jvp, vjp)


def _value_before_call(p: Any, func) -> Any:
    """A constant operand as it is now; copied when the call is in place and would overwrite it."""
    if not isinstance(p, Tensor):
        return p
    return p.detach().clone() if func in _IN_PLACE else p.detach()


def neg_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    return Linearization.fresh(lambda ts: -ts[0], lambda u: [-u])
