"""Seeded float64 layers shared by the tape tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from depthscope.estimators._tape import record


def conv3x3(c_in: int, c_out: int, **kw) -> nn.Conv2d:
    """A 3x3 convolution with fixed random weights, float64."""
    torch.manual_seed(1)
    return nn.Conv2d(c_in, c_out, 3, **kw).double()


def eval_batchnorm(c: int) -> nn.BatchNorm2d:
    """An eval-mode BatchNorm with random running statistics and scales, float64 (nothing trivial to fold)."""
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(c).double().eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.normal_()
    return bn


def exact_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """Per-example Jacobian ``(B, n_out, n_in)`` of a batch-preserving ``fn`` at ``x: (B, *S)``, by
    jacrev (attention on SDPA's math kernel, the one with a double backward)."""
    one = lambda z: fn(z.unsqueeze(0)).squeeze(0)  # noqa: E731
    with sdpa_kernel([SDPBackend.MATH]):
        J = torch.func.vmap(torch.func.jacrev(one))(x)
    return J.reshape(x.shape[0], -1, x[0].numel())


def assert_tape_matches_jacrev(fn, x: torch.Tensor, gen: torch.Generator, probes: int, atol: float, rtol: float):
    """Record ``fn`` at ``x``; its tape's J v and J^T u for ``probes`` random tangents equal the
    exact Jacobian's, recording does not change the output, and the caller's tangents are never
    overwritten."""
    y, tape, reason = record(fn, x.clone().requires_grad_(True))
    assert tape is not None, reason
    assert torch.allclose(y.detach(), fn(x))  # recording does not change the function
    J = exact_jacobian(fn, x)  # (B, m, n)
    B, m, n = J.shape
    v = torch.randn(probes, *x.shape, dtype=x.dtype, generator=gen)
    u = torch.randn(probes, *y.shape, dtype=x.dtype, generator=gen)
    v0, u0 = v.clone(), u.clone()
    jv = tape.jvp(v).reshape(probes, B, m)
    jtu = tape.vjp(u).reshape(probes, B, n)
    assert torch.equal(v, v0) and torch.equal(u, u0)
    assert torch.allclose(jv, torch.einsum("bmn,pbn->pbm", J, v.reshape(probes, B, n)), atol=atol, rtol=rtol)
    assert torch.allclose(jtu, torch.einsum("bmn,pbm->pbn", J, u.reshape(probes, B, m)), atol=atol, rtol=rtol)
