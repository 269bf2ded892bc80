"""Rules for the calls of neural-network layers: convolution, linear, eval-mode BatchNorm and
pointwise activations.

Each rule has the signature of `rules.Rule` and returns a `Linearization`. Convolutions and
linear layers become the same layer without its bias; BatchNorm and activations become a product
with a constant (a per-channel scale, a derivative), which the replay may take in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from depthscope.estimators._tape.calls import arg, int_list
from depthscope.estimators._tape.linearization import Linearization, Unsupported

Tensor = torch.Tensor
T = torch.Tensor  # the method table: T.add is Tensor.add


def conv_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("convolution with a weight that depends on the input")
    x, weight = args[0], arg(args, kwargs, 1, "weight")
    d = weight.ndim - 2
    if x.ndim != d + 2:
        raise Unsupported("unbatched convolution")
    stride = int_list(arg(args, kwargs, 3, "stride", 1), d)
    padding = arg(args, kwargs, 4, "padding", 0)
    dilation = int_list(arg(args, kwargs, 5, "dilation", 1), d)
    groups = arg(args, kwargs, 6, "groups", 1)
    if isinstance(padding, str):
        if padding == "valid":
            padding = [0] * d
        else:  # "same": symmetric only
            total = [dl * (k - 1) for dl, k in zip(dilation, weight.shape[2:])]
            if any(t % 2 for t in total):
                raise Unsupported("asymmetric 'same' padding")
            padding = [t // 2 for t in total]
    return _conv_linearization(func, weight.detach(), int_list(padding, d), stride, dilation, groups, x.shape)


def _conv_linearization(func, weight, padding, stride, dilation, groups, in_shape, scale=None) -> Linearization:
    """A convolution without bias, its weight times ``scale: (C_out,)`` where given; its
    ``rescale(s)`` is the convolution with weight * s (a following per-channel scale folded in, see
    `fusion.fuse_scales`).

    2-d convolutions run channels-last: on a CPU, oneDNN's channels-last kernels are 1.1-1.5x faster
    than NCHW ones for the small images of CIFAR-style nets (16 tangents at 16-64 channels,
    benchmarks/tape_vs_autograd.py). The scaled weight is written in that layout in one pass at the
    first product, not when recorded (a convolution followed by BatchNorm is rebuilt by `rescale`
    first): one pass over the weight instead of a reorder, a scaling and a second reorder.
    J^T u is ``convolution_backward`` for every stride: on one tangent the convolution with the
    flipped kernel was 0.9-1.1x its time from 16 to 512 channels, and building that kernel took
    6.7 ms at 512 channels (benchmarks/probe_parts.py).
    """
    d = weight.ndim - 2
    fmt = channels_last(weight.ndim)
    laid_out: list[Tensor] = []

    def w() -> Tensor:
        if not laid_out:
            if scale is None and weight.is_contiguous(memory_format=fmt):
                laid_out.append(weight)
            else:
                out = torch.empty_like(weight, memory_format=fmt)
                if scale is None:
                    out.copy_(weight)
                else:
                    torch.mul(weight, scale.reshape(-1, *([1] * (weight.ndim - 1))), out=out)
                laid_out.append(out)
        return laid_out[0]

    def jvp(ts):
        v = ts[0]
        y = func(v.flatten(0, 1).contiguous(memory_format=fmt), w(), None, stride, padding, dilation, groups)
        return y.unflatten(0, v.shape[:2])

    def vjp(u):
        P = u.shape[0]
        like = torch.empty((P * in_shape[0], *in_shape[1:]), dtype=u.dtype, memory_format=fmt)
        g = torch.ops.aten.convolution_backward(
            u.flatten(0, 1).contiguous(memory_format=fmt),
            like,
            w(),
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

    def rescale(s: Tensor):
        s = s.reshape(-1)
        return _conv_linearization(
            func, weight, padding, stride, dilation, groups, in_shape, s if scale is None else scale * s
        )

    return Linearization(jvp, vjp, jvp_fresh=True, vjp_fresh=True, rescale=rescale)


def channels_last(ndim: int) -> torch.memory_format:
    """The memory format the tape keeps tensors of ``ndim`` dimensions in (channels-last for 4-d)."""
    return torch.channels_last if ndim == 4 else torch.contiguous_format


def linear_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("linear layer with a weight that depends on the input")
    weight = arg(args, kwargs, 1, "weight")
    weight = weight.detach()
    return Linearization.fresh(lambda ts: F.linear(ts[0], weight), lambda u: [u @ weight])


def batch_norm_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("batch norm with statistics that depend on the input")
    x = args[0]
    var = arg(args, kwargs, 2, "running_var")
    weight = arg(args, kwargs, 3, "weight")
    training = arg(args, kwargs, 5, "training", False)
    eps = arg(args, kwargs, 7, "eps", 1e-5)
    if training or var is None:
        raise Unsupported("batch norm from batch statistics")
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    channel_scale = scale.detach()
    scale = channel_scale.reshape(-1, *([1] * (x.ndim - 2)))
    return _scaling(scale, channel_scale)


def _diagonal(d: Tensor) -> Linearization:
    d = d.detach().contiguous(memory_format=channels_last(d.ndim))  # the layout of the convolutions
    return _scaling(d)


def _scaling(d: Tensor, channel_scale: Tensor | None = None) -> Linearization:
    """The elementwise product with a constant ``d`` that broadcasts to the tangent's per-tangent
    shape (a ReLU mask, a BatchNorm scale); ``channel_scale: (C,)`` where ``d`` is per channel."""

    def fits(t: Tensor) -> bool:
        return (
            torch.promote_types(t.dtype, d.dtype) == t.dtype
            and d.ndim <= t.ndim - 1
            and all(n == 1 or n == m for n, m in zip(reversed(d.shape), reversed(t.shape)))
        )

    return Linearization(
        jvp=lambda ts: ts[0] * d,
        vjp=lambda u: [u * d],
        jvp_fresh=True,
        vjp_fresh=True,
        jvp_inplace=lambda ts: ts[0].mul_(d) if fits(ts[0]) else None,
        vjp_inplace=lambda u: [u.mul_(d)] if fits(u) else None,
        channel_scale=channel_scale,
    )


# Pointwise functions: derivative in closed form from the input (before an in-place call runs).
POINTWISE_FAST: dict[Any, Callable[[Tensor], Tensor]] = {}
for _f in (torch.relu, F.relu, T.relu, torch.relu_, T.relu_):
    POINTWISE_FAST[_f] = lambda x: (x > 0).to(x.dtype)
for _f in (torch.tanh, T.tanh, F.tanh):
    POINTWISE_FAST[_f] = lambda x: 1 - torch.tanh(x) ** 2
for _f in (torch.sigmoid, T.sigmoid, F.sigmoid):
    POINTWISE_FAST[_f] = lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x))
# Pointwise functions whose derivative is taken by autograd on the primal input.
POINTWISE_AUTOGRAD = {
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


def pointwise_rule(func, args, kwargs, out, tracked, ids) -> Linearization:
    if tracked != [0]:
        raise Unsupported("pointwise function with a tensor parameter that depends on the input")
    x = args[0]
    fast = POINTWISE_FAST.get(func)
    if fast is not None:
        return _diagonal(fast(x))
    rest = {k: v for k, v in kwargs.items() if k != "inplace"}
    xc = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = func(xc, *args[1:], **rest)
        (d,) = torch.autograd.grad(y.sum(), xc)
    return _diagonal(d)
