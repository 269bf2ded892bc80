"""Procrustes projection of convolutions and the Sedghi et al. (2019) operator spectrum (claim N4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jacrev

import depthscope
from depthscope.zoo import conv_operator_singular_values, procrustes_
from depthscope.zoo.procresnet import ProcResNet, Transition, procresnet
from depthscope.zoo.procrustes import polar_newton_schulz, procrustes_weight

SEED = 0
# The tolerance for a float32 1x1 kernel after projection.
PROJECTION_ATOL = 1e-4
# Float64 oracles (SVD, explicit operator matrices) on tiny problems: round-off only.
ORACLE_ATOL = 1e-9


def _circular_operator(weight: torch.Tensor, n: tuple[int, int]) -> torch.Tensor:
    """The explicit (c_out n_h n_w) x (c_in n_h n_w) matrix of the circular, stride-1 convolution."""
    c_out, c_in, kh, kw = weight.shape

    def conv(x: torch.Tensor) -> torch.Tensor:
        # Circular padding of k-1 on one side: a circular shift of 'same' padding, same spectrum.
        x = F.pad(x.reshape(1, c_in, *n), (0, kw - 1, 0, kh - 1), mode="circular")
        return F.conv2d(x, weight).flatten()

    return jacrev(conv)(torch.zeros(c_in * n[0] * n[1], dtype=weight.dtype))


def _nonzero(sv: torch.Tensor, rtol: float = 1e-8) -> torch.Tensor:
    return sv[sv > rtol * sv.max()]


@pytest.mark.parametrize("shape", [(3, 2, 3, 3), (2, 3, 3, 3), (2, 2, 2, 3)])
@pytest.mark.parametrize("n", [(4, 4), (4, 5)])
def test_sedghi_matches_explicit_operator_svd(shape, n) -> None:
    torch.manual_seed(SEED)
    weight = torch.randn(*shape, dtype=torch.float64)
    ours = conv_operator_singular_values(weight, n)
    oracle = torch.linalg.svdvals(_circular_operator(weight, n))
    assert ours.shape == oracle.shape == (n[0] * n[1] * min(shape[:2]),)
    torch.testing.assert_close(ours, oracle, rtol=0.0, atol=ORACLE_ATOL)


@pytest.mark.parametrize("c_out,c_in", [(8, 4), (4, 8), (6, 6), (32, 16)])
def test_1x1_projection_is_exact(c_out: int, c_in: int) -> None:
    torch.manual_seed(SEED)
    conv = nn.Conv2d(c_in, c_out, 1, bias=False)
    w0 = conv.weight.detach().clone()
    procrustes_(conv)
    target = math.sqrt(c_out / c_in)
    sv = torch.linalg.svdvals(conv.weight[:, :, 0, 0].double())
    torch.testing.assert_close(sv, torch.full_like(sv, target), rtol=0.0, atol=PROJECTION_ATOL)
    u, _, vh = torch.linalg.svd(w0[:, :, 0, 0].double(), full_matrices=False)
    torch.testing.assert_close(conv.weight[:, :, 0, 0].double(), target * u @ vh, rtol=0.0, atol=PROJECTION_ATOL)


def test_strided_1x1_operator_is_uniform() -> None:
    """With stride 2 the operator subsamples then mixes channels: every nonzero singular value is
    still sqrt(c_out / c_in), checked on the explicit operator matrix."""
    torch.manual_seed(SEED)
    c_in, c_out, n = 3, 6, 4
    conv = procrustes_(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)).double()
    op = jacrev(lambda v: conv(v.reshape(1, c_in, n, n)).flatten())(torch.zeros(c_in * n * n, dtype=torch.float64))
    sv = _nonzero(torch.linalg.svdvals(op))
    assert sv.numel() == c_in * (n // 2) ** 2
    torch.testing.assert_close(sv, torch.full_like(sv, math.sqrt(c_out / c_in)), rtol=0.0, atol=PROJECTION_ATOL)


def test_newton_schulz_polar_factor_complex_and_rank_deficient() -> None:
    torch.manual_seed(SEED)
    a = torch.randn(5, 4, 3, dtype=torch.complex128)
    u, _, vh = torch.linalg.svd(a, full_matrices=False)
    torch.testing.assert_close(polar_newton_schulz(a), u @ vh, rtol=0.0, atol=ORACLE_ATOL)
    wide = a.mT
    torch.testing.assert_close(polar_newton_schulz(wide), (u @ vh).mT, rtol=0.0, atol=ORACLE_ATOL)
    # Rank 1: the one nonzero singular value goes to 1, the zero ones stay (numerically) zero.
    rank1 = torch.outer(torch.randn(4, dtype=torch.float64), torch.randn(3, dtype=torch.float64))
    sv = torch.linalg.svdvals(polar_newton_schulz(rank1))
    torch.testing.assert_close(sv, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), rtol=0.0, atol=1e-6)
    zero = torch.zeros(3, 2, dtype=torch.float64)
    assert torch.equal(polar_newton_schulz(zero), zero)


def test_3x3_projection_reduces_spread() -> None:
    """Not exact for 3x3 (the crop to the kernel support is a projection): the spread
    max/min of the operator's singular values shrinks but does not reach 1. Over seeds 0-19 the
    spread shrinks 3x-170x and the mean |s - 1| by 1.5x-1.6x; the bounds below leave margin."""
    torch.manual_seed(SEED)
    n = 8
    weight = torch.randn(16, 16, 3, 3, dtype=torch.float64) / math.sqrt(9 * 16)
    projected = procrustes_weight(weight, n)
    assert projected.shape == weight.shape
    before = conv_operator_singular_values(weight, n)
    after = conv_operator_singular_values(projected, n)
    spread_before = (before.max() / before.min()).item()
    spread_after = (after.max() / after.min()).item()
    assert spread_after < spread_before / 2
    assert spread_after > 1.5  # documents that 3x3 is not exact
    assert (after - 1).abs().mean() < (before - 1).abs().mean() / 1.3


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        procrustes_(nn.Conv2d(4, 4, 1, groups=2))
    with pytest.raises(ValueError):
        conv_operator_singular_values(torch.randn(2, 2, 5, 5), 4)


def _transition_singular_values(t: Transition) -> torch.Tensor:
    return torch.linalg.svdvals(t.conv.weight[:, :, 0, 0].double())


def test_procresnet_transitions() -> None:
    torch.manual_seed(SEED)
    model = procresnet(n=2, width=0.5, input_size=8)
    assert isinstance(model, ProcResNet)
    transitions = model.transitions()
    assert [(t.conv.in_channels, t.conv.out_channels) for t in transitions] == [(8, 16), (16, 32)]
    for t in transitions:
        sv = _transition_singular_values(t)
        torch.testing.assert_close(sv, torch.full_like(sv, math.sqrt(2.0)), rtol=0.0, atol=PROJECTION_ATOL)
    # A transition is a bare strided 1x1 conv: no residual branch, output = conv(x) exactly.
    x = torch.randn(2, 8, 8, 8)
    assert torch.equal(transitions[0](x), F.conv2d(x, transitions[0].conv.weight, stride=2))
    assert transitions[0](x).shape == (2, 16, 4, 4)
    chain = depthscope.Chain.from_module(model.eval(), example=model.example_input(2))
    assert len(chain) == 3 * 2 + 2 + 2


def test_procresnet_control_and_reprojection() -> None:
    torch.manual_seed(SEED)
    model = procresnet(n=1, width=0.5, input_size=8, procrustes=False)
    spread = [(s.max() / s.min()).item() for s in map(_transition_singular_values, model.transitions())]
    assert min(spread) > 1.5  # Gaussian transitions are far from uniform
    model.project_transitions_()
    for t in model.transitions():
        sv = _transition_singular_values(t)
        torch.testing.assert_close(sv, torch.full_like(sv, math.sqrt(2.0)), rtol=0.0, atol=PROJECTION_ATOL)
