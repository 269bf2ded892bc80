"""`LinearTape`: a step's Jacobian as the list of linear operations its forward pass performed.

While a step runs, a ``TorchFunctionMode`` sees every torch call. Calls on tensors that depend on
the step's input are recorded with their linearisation at this input:

* convolutions and linear layers become the same layer without its bias;
* eval-mode BatchNorm becomes a per-channel scale, weight / sqrt(running_var + eps);
* ReLU, tanh and the other pointwise functions become a multiplication by their derivative;
* sums, differences, products and quotients follow the sum and product rules;
* reshapes, indexing, padding and transposes apply to the tangent unchanged;
* a few more linear or bilinear functions (pooling, means, concatenation, matmul, einsum) go
  through ``torch.func`` one operation at a time.

Applying J or J^T to P tangents then costs about P forward passes of the step's layers, batched,
where autograd's double backward costs several (``_convolution_double_backward`` takes a slow path
on a CPU) and forward-mode AD is slower still through BatchNorm. A step whose forward calls
anything not listed records no tape and keeps the autograd route; `LinearizedChain` checks every
tape against autograd before using it.

Tangents have a leading dimension: ``(P, *shape)`` for a node of shape ``shape``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

Tensor = torch.Tensor
T = torch.Tensor  # the method table: T.add is Tensor.add


class Unsupported(Exception):
    """The forward pass made a call the tape cannot linearise; the step keeps the autograd route."""


class _Op:
    """One recorded operation: ``out = f(ins)`` with its linearisation.

    ``jvp(tangents)`` maps the inputs' tangents ``[(P, *shape_i)]`` to ``(P, *shape_out)``;
    ``vjp(cot)`` maps ``(P, *shape_out)`` to one cotangent per input (None where it is zero).
    Either closure may carry ``fresh = True`` (its result is newly allocated, never an alias of
    its argument) and ``inplace``: the same map written into its (first) argument, used when the
    replay owns that tensor, returning None where shapes or dtypes do not allow it. Overwriting
    the replay's own intermediates saves megabyte-sized allocations, each paid in page faults: J v
    for 16 resnet56 tangents is 1.3-1.5x faster (benchmarks/probe_parts.py).
    """

    __slots__ = ("ins", "out", "jvp", "vjp")

    def __init__(self, ins: tuple[int, ...], out: int, jvp: Callable, vjp: Callable):
        self.ins, self.out, self.jvp, self.vjp = ins, out, jvp, vjp


class LinearTape:
    """The recorded linearisation of one step.

    Attributes:
        in_shape, out_shape: the step's input and output shapes (batch included).
        ops: the recorded operations, in execution order.
        signature: what the tape's code path depends on: each recorded call's function, its
            arguments' shapes, dtypes and non-tensor values, and which tensors were tracked. Two
            tapes with one signature replay through the same rules on the same shapes; only the
            constants (weights, ReLU masks) differ.
    """

    def __init__(
        self,
        in_shape: torch.Size,
        out_shape: torch.Size,
        ops: list[_Op],
        out_node: int,
        n_nodes: int,
        signature: tuple = (),
    ):
        self.in_shape, self.out_shape = in_shape, out_shape
        self.ops, self.out_node, self.n_nodes = ops, out_node, n_nodes
        # How many ops read each node (the output counts as read by the caller): a tangent read
        # once, and allocated by the replay itself, may be overwritten by the op that reads it.
        self._uses = [0] * n_nodes
        self._uses[out_node] += 1
        for op in ops:
            for i in op.ins:
                self._uses[i] += 1
        self.signature = (tuple(in_shape), tuple(out_shape), out_node, signature)

    def jvp(self, v: Tensor) -> Tensor:
        """J v for tangents ``v: (P, *in_shape)``; returns ``(P, *out_shape)``."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.jvp(v)
        tangents: list[Tensor | None] = [None] * self.n_nodes
        owned = [False] * self.n_nodes  # the node's tensor was allocated by this replay
        tangents[0] = v
        uses = self._uses
        for op in self.ops:
            ts = [tangents[i] for i in op.ins]
            inplace = getattr(op.jvp, "inplace", None)
            first = op.ins[0]
            out = None
            if inplace is not None and owned[first] and uses[first] == 1:
                out = inplace(ts)  # None where shapes or dtypes forbid it
            if out is not None:
                owned[op.out] = True
            else:
                out = op.jvp(ts)
                owned[op.out] = getattr(op.jvp, "fresh", False)
            tangents[op.out] = out
        return _owned(tangents[self.out_node], v)

    def vjp(self, u: Tensor) -> Tensor:
        """J^T u for cotangents ``u: (P, *out_shape)``; returns ``(P, *in_shape)``."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.vjp(u)
        cots: list[Tensor | None] = [None] * self.n_nodes
        owned = [False] * self.n_nodes  # the node's cotangent was allocated here and is held nowhere else
        cots[self.out_node] = u
        for op in reversed(self.ops):
            c = cots[op.out]
            if c is None:
                continue
            cots[op.out] = None  # an in-place op's output node is never read again
            inplace = getattr(op.vjp, "inplace", None)
            outs = inplace(c) if inplace is not None and owned[op.out] else None
            fresh = outs is not None or getattr(op.vjp, "fresh", False)
            if outs is None:
                outs = op.vjp(c)
            for i, ci in zip(op.ins, outs):
                if ci is None:
                    continue
                if cots[i] is None:
                    cots[i], owned[i] = ci, fresh
                elif owned[i] and cots[i].shape == ci.shape:
                    cots[i].add_(ci)
                else:
                    cots[i], owned[i] = cots[i] + ci, True
        if cots[0] is None:
            return torch.zeros(u.shape[0], *self.in_shape, dtype=u.dtype)
        return _owned(cots[0], u)


def _owned(t: Tensor, source: Tensor) -> Tensor:
    """``t`` as a tensor of its own: copied (in its layout) where it is the caller's tensor or a
    view of it, or broadcast (stride 0), so a caller may write into the result. No other copy: the
    result keeps the layout the last operation produced (channels-last after a convolution)."""
    root = source if source._base is None else source._base
    shared = t is source or t is root or t._base is root
    broadcast = any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape))
    return t.clone(memory_format=torch.preserve_format) if shared or broadcast else t


# ---- helpers ------------------------------------------------------------------------------
def _lift(v: Tensor, ndim_out: int) -> Tensor:
    """View a tangent ``(P, *s)`` so it broadcasts against ``(P, *s_out)`` with ``len(s_out) = ndim_out``."""
    extra = ndim_out - (v.ndim - 1)
    if extra <= 0:
        return v
    return v.reshape(v.shape[0], *([1] * extra), *v.shape[1:])


def _sum_to(u: Tensor, shape: torch.Size) -> Tensor:
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


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _tuple(value: Any, d: int) -> list[int]:
    if isinstance(value, int):
        return [value] * d
    out = list(value)
    return out * d if len(out) == 1 else out


# ---- rules: each returns (jvp, vjp) closures for the tracked argument positions -------------
def _conv_rule(func, args, kwargs, out, tracked, ids):
    if tracked != [0]:
        raise Unsupported("convolution with a weight that depends on the input")
    x, weight = args[0], _arg(args, kwargs, 1, "weight")
    d = weight.ndim - 2
    if x.ndim != d + 2:
        raise Unsupported("unbatched convolution")
    stride = _tuple(_arg(args, kwargs, 3, "stride", 1), d)
    padding = _arg(args, kwargs, 4, "padding", 0)
    dilation = _tuple(_arg(args, kwargs, 5, "dilation", 1), d)
    groups = _arg(args, kwargs, 6, "groups", 1)
    if isinstance(padding, str):
        if padding == "valid":
            padding = [0] * d
        else:  # "same": symmetric only
            total = [dl * (k - 1) for dl, k in zip(dilation, weight.shape[2:])]
            if any(t % 2 for t in total):
                raise Unsupported("asymmetric 'same' padding")
            padding = [t // 2 for t in total]
    return _conv_pair(func, weight.detach(), _tuple(padding, d), stride, dilation, groups, x.shape)


def _conv_pair(func, weight, padding, stride, dilation, groups, in_shape):
    """(jvp, vjp) of a convolution without bias; ``jvp.rescale(s)`` builds the pair for weight * s
    (a following per-channel scale folded in, see `_fuse_scales`).

    2-d convolutions run channels-last: on a CPU, oneDNN's channels-last kernels are 1.1-1.5x faster
    than NCHW ones for the small images of CIFAR-style nets (16 tangents at 16-64 channels,
    benchmarks/tape_vs_autograd.py).
    """
    d = weight.ndim - 2
    fmt = _channels_last(weight.ndim)
    weight = weight.contiguous(memory_format=fmt)

    def jvp(ts):
        v = ts[0]
        y = func(v.flatten(0, 1).contiguous(memory_format=fmt), weight, None, stride, padding, dilation, groups)
        return y.unflatten(0, v.shape[:2])

    if all(st == 1 for st in stride) and all(
        dl * (k - 1) >= p for dl, k, p in zip(dilation, weight.shape[2:], padding)
    ):
        # A stride-1 convolution's transpose is the convolution with the kernel flipped and its
        # channel axes swapped (per group), padded by dilation (k - 1) - padding: one forward
        # convolution, 1.0-1.3x faster than convolution_backward on one tangent
        # (benchmarks/probe_parts.py).
        pad_t = [dl * (k - 1) - p for dl, k, p in zip(dilation, weight.shape[2:], padding)]
        flipped: list[Tensor] = []  # built at the first use: a conv -> BN pair is rebuilt by `rescale`

        def vjp(u):
            if not flipped:
                f = weight.flip(tuple(range(2, weight.ndim))).unflatten(0, (groups, weight.shape[0] // groups))
                flipped.append(f.transpose(1, 2).flatten(0, 1).contiguous(memory_format=fmt))
            g = func(u.flatten(0, 1).contiguous(memory_format=fmt), flipped[0], None, 1, pad_t, dilation, groups)
            return [g.unflatten(0, u.shape[:2])]
    else:

        def vjp(u):
            P = u.shape[0]
            like = torch.empty((P * in_shape[0], *in_shape[1:]), dtype=u.dtype, memory_format=fmt)
            g = torch.ops.aten.convolution_backward(
                u.flatten(0, 1).contiguous(memory_format=fmt),
                like,
                weight,
                None,
                stride,
                padding,
                dilation,
                False,
                [0] * d,
                groups,
                [True, False, False],
            )[0]
            return [g.unflatten(0, (P, in_shape[0]))]

    def rescale(scale: Tensor):
        w = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
        return _conv_pair(func, w, padding, stride, dilation, groups, in_shape)

    jvp.rescale = rescale
    jvp.fresh = vjp.fresh = True
    return jvp, vjp


def _channels_last(ndim: int) -> torch.memory_format:
    return torch.channels_last if ndim == 4 else torch.contiguous_format


def _linear_rule(func, args, kwargs, out, tracked, ids):
    if tracked != [0]:
        raise Unsupported("linear layer with a weight that depends on the input")
    weight = _arg(args, kwargs, 1, "weight")
    weight = weight.detach()
    return _fresh(lambda ts: F.linear(ts[0], weight)), _fresh(lambda u: [u @ weight])


def _batch_norm_rule(func, args, kwargs, out, tracked, ids):
    if tracked != [0]:
        raise Unsupported("batch norm with statistics that depend on the input")
    x = args[0]
    var = _arg(args, kwargs, 2, "running_var")
    weight = _arg(args, kwargs, 3, "weight")
    training = _arg(args, kwargs, 5, "training", False)
    eps = _arg(args, kwargs, 7, "eps", 1e-5)
    if training or var is None:
        raise Unsupported("batch norm from batch statistics")
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    channel_scale = scale.detach()
    scale = channel_scale.reshape(-1, *([1] * (x.ndim - 2)))

    jvp, vjp = _scaling(scale)
    jvp.channel_scale = channel_scale
    return jvp, vjp


def _diagonal(d: Tensor):
    d = d.detach().contiguous(memory_format=_channels_last(d.ndim))  # the layout of the convolutions
    return _scaling(d)


def _scaling(d: Tensor):
    """(jvp, vjp) of the elementwise product with a constant ``d`` that broadcasts to the tangent's
    per-tangent shape (a ReLU mask, a BatchNorm scale)."""

    def jvp(ts):
        return ts[0] * d

    def vjp(u):
        return [u * d]

    def fits(t: Tensor) -> bool:
        return (
            torch.promote_types(t.dtype, d.dtype) == t.dtype
            and d.ndim <= t.ndim - 1
            and all(n == 1 or n == m for n, m in zip(reversed(d.shape), reversed(t.shape)))
        )

    jvp.inplace = lambda ts: ts[0].mul_(d) if fits(ts[0]) else None
    vjp.inplace = lambda u: [u.mul_(d)] if fits(u) else None
    jvp.fresh = vjp.fresh = True
    return jvp, vjp


def _fresh(f: Callable) -> Callable:
    """Mark a closure whose result is newly allocated (see `_Op`)."""
    f.fresh = True
    return f


# Pointwise functions: derivative in closed form from the input (before an in-place call runs).
_POINTWISE_FAST: dict[Any, Callable[[Tensor], Tensor]] = {}
for _f in (torch.relu, F.relu, T.relu, torch.relu_, T.relu_):
    _POINTWISE_FAST[_f] = lambda x: (x > 0).to(x.dtype)
for _f in (torch.tanh, T.tanh, F.tanh):
    _POINTWISE_FAST[_f] = lambda x: 1 - torch.tanh(x) ** 2
for _f in (torch.sigmoid, T.sigmoid, F.sigmoid):
    _POINTWISE_FAST[_f] = lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x))
# Pointwise functions whose derivative is taken by autograd on the primal input.
_POINTWISE_AUTOGRAD = {
    F.gelu,
    F.silu,
    F.softplus,
    F.elu,
    F.leaky_relu,
    F.hardtanh,
    F.relu6,
    F.selu,
    F.celu,
    F.mish,
    F.logsigmoid,
    F.softsign,
    F.tanhshrink,
    F.hardswish,
    F.hardsigmoid,
    torch.exp,
    T.exp,
    torch.sin,
    T.sin,
    torch.cos,
    T.cos,
    torch.abs,
    T.abs,
    torch.erf,
    T.erf,
    torch.sqrt,
    T.sqrt,
    torch.rsqrt,
    T.rsqrt,
    torch.log,
    T.log,
    torch.square,
    T.square,
    torch.clamp,
    T.clamp,
    torch.clip,
    T.clip,
    T.pow,
    torch.pow,
    T.__pow__,
}


def _pointwise_rule(func, args, kwargs, out, tracked, ids):
    if tracked != [0]:
        raise Unsupported("pointwise function with a tensor parameter that depends on the input")
    x = args[0]
    fast = _POINTWISE_FAST.get(func)
    if fast is not None:
        return _diagonal(fast(x))
    rest = {k: v for k, v in kwargs.items() if k != "inplace"}
    xc = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = func(xc, *args[1:], **rest)
        (d,) = torch.autograd.grad(y.sum(), xc)
    return _diagonal(d)


# Sums: (first operand coefficient, second operand coefficient) given alpha.
_ADD = {torch.add, T.add, T.__add__, T.__radd__, T.add_, T.__iadd__}
_SUB = {torch.sub, T.sub, T.__sub__, T.sub_, T.__isub__, torch.subtract, T.subtract}
_RSUB = {T.__rsub__}


def _sum_rule(func, args, kwargs, out, tracked, ids):
    alpha = kwargs.get("alpha", 1)
    if len(args) > 2:
        raise Unsupported("add with a positional alpha")
    sign = 1 if func in _ADD else -1
    coeffs = [1, sign * alpha] if func not in _RSUB else [-1, 1]
    shapes = [args[i].shape for i in tracked]
    c = [coeffs[i] for i in tracked]
    nd = out.ndim

    def jvp(ts):
        total = None
        for ci, t in zip(c, ts):
            term = _lift(t, nd) if ci == 1 else ci * _lift(t, nd)
            total = term if total is None else total + term
        return total.expand(total.shape[0], *out.shape) if total.shape[1:] != out.shape else total

    def vjp(u):
        return [_sum_to(u if ci == 1 else ci * u, s) for ci, s in zip(c, shapes)]

    if len(c) == 2 and c[0] == 1 and tuple(shapes[0]) == tuple(out.shape):
        jvp.fresh = True  # a + b allocates; and the first term may take the sum in place

        def inplace(ts):
            a, b = ts
            if torch.promote_types(a.dtype, b.dtype) != a.dtype:
                return None
            return a.add_(_lift(b, nd), alpha=c[1])

        jvp.inplace = inplace
    return jvp, vjp


_MUL = {torch.mul, T.mul, T.__mul__, T.__rmul__, T.mul_, T.__imul__, torch.multiply, T.multiply}
_DIV = {torch.div, T.div, T.__truediv__, T.div_, T.__itruediv__, torch.true_divide, T.true_divide}
_IN_PLACE = {T.mul_, T.__imul__, T.div_, T.__itruediv__}


def _product_rule(func, args, kwargs, out, tracked, ids):
    """a * b by the product rule, a / b with b constant; runs before the call (in-place safe)."""
    a, b = args[0], args[1]
    nd = out.ndim
    if func in _DIV:
        if kwargs.get("rounding_mode") is not None or 1 in tracked:
            raise Unsupported("division by a tensor that depends on the input")
        b = _value_before_call(b, func)
        return (lambda ts: _lift(ts[0], nd) / b), (lambda u: [_sum_to(u / b, a.shape)])
    # Each tracked operand's tangent is multiplied by the other operand's value before the call.
    partners = {0: _value_before_call(b, func), 1: _value_before_call(a, func)}
    shapes = {i: args[i].shape for i in tracked}

    def jvp(ts):
        total = None
        for i, t in zip(tracked, ts):
            term = _lift(t, nd) * partners[i]
            total = term if total is None else total + term
        return total

    def vjp(u):
        return [_sum_to(u * partners[i], shapes[i]) for i in tracked]

    return jvp, vjp


def _value_before_call(p: Any, func) -> Any:
    """A constant operand as it is now; copied when the call is in place and would overwrite it."""
    if not isinstance(p, Tensor):
        return p
    return p.detach().clone() if func in _IN_PLACE else p.detach()


def _neg_rule(func, args, kwargs, out, tracked, ids):
    return _fresh(lambda ts: -ts[0]), _fresh(lambda u: [-u])


# Pure reshapes: the element order is kept, only the shape changes.
_RESHAPES = {
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


def _reshape_rule(func, args, kwargs, out, tracked, ids):
    if tracked != [0] or (func in (T.view, T.reshape) and len(args) > 1 and isinstance(args[1], torch.dtype)):
        raise Unsupported("reshape by dtype")
    in_shape, out_shape = args[0].shape, out.shape
    return (lambda ts: ts[0].reshape(ts[0].shape[0], *out_shape)), (lambda u: [u.reshape(u.shape[0], *in_shape)])


def _basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


def _getitem_rule(func, args, kwargs, out, tracked, ids):
    if tracked != [0] or not _basic_index(args[1]):
        return _generic_rule(func, args, kwargs, out, tracked, ids)
    index = (slice(None),) + (args[1] if isinstance(args[1], tuple) else (args[1],))
    in_shape = args[0].shape

    def vjp(u):
        z = torch.zeros(u.shape[0], *in_shape, dtype=u.dtype)
        z[index] = u
        return [z]

    return (lambda ts: ts[0][index]), vjp


def _pad_rule(func, args, kwargs, out, tracked, ids):
    pad = _arg(args, kwargs, 1, "pad")
    mode = _arg(args, kwargs, 2, "mode", "constant")
    if tracked != [0] or mode != "constant" or any(p < 0 for p in pad):
        return _generic_rule(func, args, kwargs, out, tracked, ids)
    x = args[0]
    index = [slice(None)] * (x.ndim + 1)
    for j in range(len(pad) // 2):
        dim = x.ndim - j  # in the tangent, which has one more leading dimension
        index[dim] = slice(pad[2 * j], out.shape[dim - 1] - pad[2 * j + 1])
    index = tuple(index)
    return (lambda ts: F.pad(ts[0], pad)), (lambda u: [u[index]])


def _permute_rule(func, args, kwargs, out, tracked, ids):
    if tracked != [0]:
        raise Unsupported("permute")
    nd = args[0].ndim
    if func in (T.permute, torch.permute):
        dims = (
            args[1:]
            if len(args) > 2 or isinstance(_arg(args, kwargs, 1, "dims"), int)
            else _arg(args, kwargs, 1, "dims")
        )
        perm = [d % nd for d in dims]
    else:  # transpose(d0, d1)
        d0, d1 = _arg(args, kwargs, 1, "dim0") % nd, _arg(args, kwargs, 2, "dim1") % nd
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    fwd = [0] + [p + 1 for p in perm]
    inv = [0] * (nd + 1)
    for i, p in enumerate(fwd):
        inv[p] = i
    return (lambda ts: ts[0].permute(fwd)), (lambda u: [u.permute(inv)])


def _generic_rule(func, args, kwargs, out, tracked, ids):
    """Linearise one call with torch.func: jvp (forward mode) and vjp, vmapped over the tangents.

    Only for the functions in `_GENERIC`, which are linear or multilinear in their tensor
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

    return jvp, vjp


_GENERIC = {
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

_RULES: dict[Any, Callable] = {}
for _f in (torch.conv1d, torch.conv2d, torch.conv3d):
    _RULES[_f] = _conv_rule
_RULES[F.linear] = _linear_rule
_RULES[F.batch_norm] = _batch_norm_rule
for _f in set(_POINTWISE_FAST) | _POINTWISE_AUTOGRAD:
    _RULES[_f] = _pointwise_rule
for _f in _ADD | _SUB | _RSUB:
    _RULES[_f] = _sum_rule
for _f in _MUL | _DIV:
    _RULES[_f] = _product_rule
for _f in (torch.neg, T.neg, T.__neg__):
    _RULES[_f] = _neg_rule
for _f in _GENERIC:
    _RULES[_f] = _generic_rule
for _f in _RESHAPES:
    _RULES[_f] = _reshape_rule
_RULES[T.__getitem__] = _getitem_rule
_RULES[F.pad] = _pad_rule
for _f in (T.permute, torch.permute, T.transpose, torch.transpose):
    _RULES[_f] = _permute_rule
# Functions whose output does not move with the input (derivative zero almost everywhere).
_CONSTANT = {torch.sign, T.sign, T.detach, torch.detach, torch.round, T.round, torch.floor, T.floor, torch.ceil, T.ceil}
# Inference-time no-ops: dropout outside training.
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
# Rules that must see the input before the call runs (an in-place call overwrites it).
_BEFORE_CALL = {_pointwise_rule, _product_rule}
# Rules that find tracked tensors anywhere in the arguments (lists, keywords), not only top level.
_ANY_POSITION = {_generic_rule, _getitem_rule, _pad_rule}


class _Recorder(TorchFunctionMode):
    """Records the linearisation of every call that touches a tracked tensor."""

    def __init__(self, x: Tensor):
        super().__init__()
        self.ids: dict[int, int] = {id(x): 0}
        self.alive: list[Tensor] = [x]  # keeps every tracked tensor (and so its id) alive
        self.ops: list[_Op] = []
        self.keys: list[tuple] = []
        self.failure: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.failure is not None:
            return func(*args, **kwargs)
        flat = _leaves(args, kwargs)
        ins = tuple(self.ids[id(a)] for a in flat if isinstance(a, Tensor) and id(a) in self.ids)
        if not ins:
            return func(*args, **kwargs)
        if func in _DROPOUT:
            out = func(*args, **kwargs)
            if _arg(args, kwargs, 2, "training", True) and _arg(args, kwargs, 1, "p", 0.5) > 0:
                self.failure = "dropout in training mode"
            else:
                self._record(ins[:1], out, (lambda ts: ts[0], lambda u: [u]), self._key(func, flat, out))
            return out
        rule = _RULES.get(func)
        tracked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and id(a) in self.ids]
        if rule is not None and rule not in _ANY_POSITION and len(tracked) != len(ins):
            self.failure = f"{_name(func)} takes a tracked tensor by keyword"
        linear = None
        if self.failure is None and rule in _BEFORE_CALL:
            shape = None
            if rule is _product_rule:
                shape = _Shape(torch.broadcast_shapes(*(a.shape for a in args[:2] if isinstance(a, Tensor))))
            linear = self._linearise(rule, func, args, kwargs, shape, tracked)
        out = func(*args, **kwargs)
        if self.failure is not None:
            return out
        if not isinstance(out, Tensor):
            if isinstance(out, (tuple, list)) and any(isinstance(o, Tensor) and o.is_floating_point() for o in out):
                self.failure = f"{_name(func)} returns several tensors"
            return out
        if not out.is_floating_point() or func in _CONSTANT:
            return out
        if rule is None:
            self.failure = f"{_name(func)} has no linearisation rule"
            return out
        if linear is None:
            linear = self._linearise(rule, func, args, kwargs, out, tracked)
        if linear is not None:
            self._record(ins, out, linear, self._key(func, flat, out))
        return out

    def _key(self, func, flat: list, out: Tensor) -> tuple:
        """The call's part of the tape's signature."""
        return (func, tuple(_describe(a, self.ids) for a in flat), tuple(out.shape))

    def _linearise(self, rule, func, args, kwargs, out, tracked):
        try:
            return rule(func, args, kwargs, out, tracked, self.ids)
        except (Unsupported, RuntimeError, TypeError, ValueError, IndexError) as err:
            self.failure = f"{_name(func)}: {err}"
            return None

    def _record(self, ins, out, linear, key):
        idx = len(self.alive)
        self.alive.append(out)
        self.ids[id(out)] = idx
        self.ops.append(_Op(ins, idx, *linear))
        self.keys.append(key)


_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout)


def _describe(a: Any, ids: dict[int, int]) -> Any:
    """An argument as the rules see its structure: a tensor by shape, dtype, strides and (if
    tracked) node; a plain value as itself; anything else by its type."""
    if isinstance(a, Tensor):
        return (tuple(a.shape), a.dtype, a.stride(), ids.get(id(a)))
    return a if isinstance(a, _PLAIN) else type(a).__qualname__


def _leaves(args: tuple, kwargs: dict) -> list:
    """The arguments' leaves in pytree order (`torch.utils._pytree.tree_leaves`), fast for the flat
    or one-level lists that torch calls take."""
    out = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, (list, tuple)):
            if any(isinstance(b, (list, tuple, dict)) for b in a):
                return torch.utils._pytree.tree_leaves((args, kwargs))
            out.extend(a)
        elif isinstance(a, dict):
            return torch.utils._pytree.tree_leaves((args, kwargs))
        else:
            out.append(a)
    return out


class _Shape:
    """Stands in for the output when a rule runs before the call: only its shape is known."""

    def __init__(self, shape: torch.Size):
        self.shape, self.ndim = shape, len(shape)


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or str(func)


def record(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, LinearTape | None, str | None]:
    """Run ``y = fn(x)`` and record its linearisation.

    Returns ``(y, tape, None)``, or ``(y, None, reason)`` when some call has no rule. Autograd
    state is untouched: ``y`` has the graph it would have without recording.
    """
    rec = _Recorder(x)
    with rec:
        y = fn(x)
    if rec.failure is not None:
        return y, None, rec.failure
    if not isinstance(y, Tensor) or id(y) not in rec.ids:
        return y, None, "the output does not depend on the input through recorded calls"
    out_node = rec.ids[id(y)]
    ops = _fuse_scales(rec.ops, out_node)
    return y, LinearTape(x.shape, y.shape, ops, out_node, len(rec.alive), tuple(rec.keys)), None


def _fuse_scales(ops: list[_Op], out_node: int) -> list[_Op]:
    """Fold each per-channel scale (eval BatchNorm) into the convolution that feeds it alone.

    conv -> BN is the commonest pair in CNNs; one convolution with scaled weights replaces two
    passes over the tangents.
    """
    uses: dict[int, int] = {}
    for op in ops:
        for i in op.ins:
            uses[i] = uses.get(i, 0) + 1
    fused: list[_Op] = []
    producer: dict[int, int] = {}  # node -> index in `fused` of the op that produces it
    for op in ops:
        scale = getattr(op.jvp, "channel_scale", None)
        src = producer.get(op.ins[0]) if scale is not None else None
        conv = fused[src] if src is not None else None
        if (
            conv is not None
            and hasattr(conv.jvp, "rescale")
            and uses.get(op.ins[0]) == 1
            and op.ins[0] != out_node
            and conv.out == op.ins[0]
        ):
            fused[src] = _Op(conv.ins, op.out, *conv.jvp.rescale(scale))
            producer[op.out] = src
            continue
        producer[op.out] = len(fused)
        fused.append(op)
    return fused
