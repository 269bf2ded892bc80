"""Benettin's frame: exponents and the Frobenius norms of the pushed frame against dense products."""

import math

import torch

from depthscope.estimators import benettin, random_frame

D = torch.float64


def _chain(gen, L=12, widths=(6, 6, 9, 9, 4, 4, 3, 8, 8, 8, 5, 5, 5)):
    Js = [torch.randn(2, widths[k + 1], widths[k], dtype=D, generator=gen) * 3 for k in range(L)]
    apply = lambda k, V: torch.einsum("bij,pbj->pbi", Js[k], V)  # noqa: E731
    return Js, apply, {k: widths[k + 1] for k in range(L)}


def test_frame_norms_equal_the_pushed_frame_through_shrinking_widths(gen):
    """J(0 -> k) Q0 = Q_k R_k ... R_1 holds even where the frame shrinks (widths 6 -> 3 -> 8)."""
    Js, apply, n_out = _chain(gen)
    q0 = random_frame(5, torch.zeros(2, 6, dtype=D), gen)
    res = benettin(apply, range(len(Js)), q0, n_out, frame_norms=True)
    V = q0
    for k in range(len(Js)):
        V = apply(k, V)
        expect = V.permute(1, 0, 2).flatten(1).norm(dim=1).log()
        assert torch.allclose(res.log_frame_norms[k], expect, rtol=1e-10)


def test_a_full_frame_gives_the_exact_frobenius_norm(gen):
    Js, apply, n_out = _chain(gen)
    res = benettin(apply, range(len(Js)), random_frame(6, torch.zeros(2, 6, dtype=D), gen), n_out, frame_norms=True)
    M = Js[0]
    for k in range(len(Js)):
        M = Js[k] @ M if k else M
        assert torch.allclose(res.log_frame_norms[k], torch.linalg.matrix_norm(M).log(), rtol=1e-10)


def test_reported_exponents_are_those_of_the_smaller_frame(gen):
    """QR is nested: the first k directions of a larger frame give a k-frame's exponents."""
    Js, apply, n_out = _chain(gen)
    q0 = random_frame(5, torch.zeros(2, 6, dtype=D), gen)
    big = benettin(apply, range(len(Js)), q0, n_out, frame_norms=True, report=2)
    small = benettin(apply, range(len(Js)), q0[:2], n_out)
    assert torch.allclose(big.exponents, small.exponents, rtol=1e-10)
    assert big.per_example.shape == (2, 2)


def test_frame_norms_do_not_overflow_over_ten_thousand_steps(gen):
    J = 3.0 * torch.eye(4, dtype=D).expand(1, 4, 4)
    res = benettin(
        lambda k, V: torch.einsum("bij,pbj->pbi", J, V),
        range(10_000),
        random_frame(2, torch.zeros(1, 4, dtype=D), gen),
        {k: 4 for k in range(10_000)},
        frame_norms=True,
    )
    # ||3^L Q||_F = 3^L sqrt(2): 3^10000 overflows float64, its log does not.
    assert math.isclose(float(res.log_frame_norms[-1, 0]), 10_000 * math.log(3) + 0.5 * math.log(2), rel_tol=1e-12)
