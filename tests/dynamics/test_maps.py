"""Maps, recurrences and RNNs as chains: analytic tangent maps against autodiff, and Lyapunov
exponents (through the one estimator, `depthscope.estimators.lyapunov`) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from depthscope._errors import NonFiniteError
from depthscope.chain import Chain, Step
from depthscope.dynamics import (
    FIBONACCI,
    fibonacci,
    henon_map,
    linear_map,
    logistic_map,
    rnn_linear,
    rnn_tanh,
    scalar_map,
)
from depthscope.estimators import lyapunov

F64 = torch.float64
PHI = (1 + math.sqrt(5)) / 2
# float64 rounding over a few thousand steps of a well-conditioned map; looser is sloppy, tighter
# would test the libm.
EXACT_TOL = 1e-10
# Largest Lyapunov exponent of the Henon map at a = 1.4, b = 0.3 (per step; Sprott, *Chaos and
# Time-Series Analysis*, 2003, table: 0.41922).
HENON_LARGEST = 0.41922
# The accuracy targets: logistic r = 4 within 1% over 10^5 steps, Henon within 2%.
LOGISTIC_STEPS = 100_000
LOGISTIC_RTOL = 0.01
# ... but at r = 4 the error is a telescoping sum over L = 10^5 steps (see the test): 2 * 40 / L.
LOGISTIC_COBOUNDARY_TOL = 1e-3
HENON_STEPS = 20_000
HENON_RTOL = 0.02


def _rand(*shape, seed=0, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return shift + scale * torch.randn(*shape, generator=g, dtype=F64)


def _chains():
    """(label, chain, state (B, n)) for every builder, each at a generic point."""
    A = _rand(3, 3, seed=1)
    W = _rand(4, 4, seed=2) / 2
    U = _rand(4, 2, seed=3)
    inputs = _rand(5, 3, 2, seed=4)
    return [
        ("linear_map", linear_map(A, 3), _rand(3, 3, seed=5)),
        ("fibonacci", fibonacci(3), _rand(3, 2, seed=6)),
        ("scalar_map", scalar_map(-1.7, 3), _rand(3, 4, seed=7)),
        ("logistic", logistic_map(3.7, 3), 0.5 + 0.2 * _rand(3, 1, seed=8)),
        ("henon", henon_map(n_steps=3), _rand(3, 2, seed=9, scale=0.5)),
        ("rnn_linear", rnn_linear(W, 5, U=U, inputs=inputs), _rand(3, 4, seed=10)),
        ("rnn_tanh", rnn_tanh(W, 5, U=U, inputs=inputs, bias=_rand(4, seed=11)), _rand(3, 4, seed=12)),
        ("rnn_tanh_autonomous", rnn_tanh(2 * W, 3), _rand(3, 4, seed=13)),
    ]


@pytest.mark.parametrize("label,chain,x", _chains(), ids=[c[0] for c in _chains()])
def test_analytic_jvp_matches_jacfwd(label, chain, x):
    V = _rand(2, *x.shape, seed=20)
    for k in (0, len(chain) - 1):  # an input-driven step differs from the first
        step = chain[k]
        y, jv = step.jvp(x, V)
        torch.testing.assert_close(y, step.fn(x), rtol=0, atol=0)
        jac = torch.func.jacfwd(step.fn)(x)  # (B, n, B, n); per-example inputs make it batch-specific
        for b in range(x.shape[0]):
            torch.testing.assert_close(jv[:, b], V[:, b] @ jac[b, :, b].T, rtol=1e-12, atol=1e-12)
            off = torch.cat([jac[b, :, :b], jac[b, :, b + 1 :]], dim=1)
            assert (off == 0).all()  # examples never mix


def test_analytic_and_autodiff_paths_give_the_same_exponents():
    # The estimator differentiates a step by forward-mode AD when it has no jvp: same numbers.
    fast = henon_map(n_steps=300)
    slow = Chain(Step(s.name, s.fn) for s in fast)
    x0 = _rand(2, 2, seed=0, scale=0.05)
    a = lyapunov(fast, x0, k=2, transient=20)
    b = lyapunov(slow, x0, k=2, transient=20)
    torch.testing.assert_close(a.per_example, b.per_example, rtol=0, atol=1e-12)


def test_fibonacci_spectrum_is_plus_minus_ln_phi():
    # From (1, 0) the state stays finite for 1475 steps; after 50 steps the frame is aligned to
    # (|psi|/phi)^50 ~ 1e-21, so each later step contributes ln phi and ln |psi| to rounding.
    res = lyapunov(fibonacci(1400), torch.tensor([[1.0, 0.0]], dtype=F64), k=2, transient=50)
    expected = torch.tensor([math.log(PHI), -math.log(PHI)], dtype=F64)  # |psi| = 1/phi
    torch.testing.assert_close(res.exponents, expected, rtol=0, atol=EXACT_TOL)


def test_linear_map_from_zero_runs_past_the_overflow():
    # J = A everywhere, so the zero state measures the same spectrum with no overflow, however long.
    res = lyapunov(fibonacci(5000), torch.zeros(2, 2, dtype=F64), k=2, transient=50)
    torch.testing.assert_close(
        res.exponents, torch.tensor([math.log(PHI), -math.log(PHI)], dtype=F64), rtol=0, atol=EXACT_TOL
    )


def test_fibonacci_state_overflows_at_step_1475():
    # x_n = (F_{n+1}, F_n); F_1477 = 2.1e308 exceeds float64: the output of step 1475 (x_1476).
    with pytest.raises(NonFiniteError) as err:
        fibonacci(1500).states(torch.tensor([[1.0, 0.0]], dtype=F64))
    assert err.value.step == 1475


def test_fibonacci_matrix_is_claim_n1():
    evals = torch.linalg.eigvalsh(torch.tensor(FIBONACCI, dtype=F64))
    torch.testing.assert_close(evals, torch.tensor([1 - PHI, PHI], dtype=F64))


@pytest.mark.parametrize("a", [0.5, -3.0, 1.0])
def test_scalar_map_exponents_are_ln_abs_a(a):
    res = lyapunov(scalar_map(a, 200), torch.zeros(2, 3, dtype=F64), k=3)
    torch.testing.assert_close(res.exponents, torch.full((3,), math.log(abs(a)), dtype=F64), rtol=0, atol=EXACT_TOL)


def test_logistic_r4_exponent_is_ln2():
    x0 = 0.1 + 0.8 * torch.rand(4, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    res = lyapunov(logistic_map(4.0, LOGISTIC_STEPS), x0, k=1, transient=100)
    assert abs(res.exponents[0].item() - math.log(2)) < LOGISTIC_RTOL * math.log(2)
    # every trajectory on its own, not only the mean
    assert (res.per_example[:, 0] - math.log(2)).abs().max() < LOGISTIC_RTOL * math.log(2)
    # Sharper, from the closed form: with x = sin^2(pi t), log|f'(x)| = log 2 + G(2t) - G(t),
    # G(t) = log|sin 2 pi t|, a coboundary; the time average telescopes to ln 2 + O(|G|/L), and
    # |G| < 40 on a float64 orbit away from exactly 0, 1/2, 1 (|1 - 2x|, 1 - x >= 1e-16 give
    # |G| <= 37), so the error is below 80 / L < 1e-3 (measured 3e-5).
    assert (res.per_example[:, 0] - math.log(2)).abs().max() < LOGISTIC_COBOUNDARY_TOL


def test_logistic_below_chaos_has_negative_exponent():
    # r = 2.5: the fixed point 1 - 1/r attracts with multiplier 2 - r, exponent ln |2 - r| = ln 0.5.
    x0 = torch.tensor([[0.3], [0.7]], dtype=F64)
    res = lyapunov(logistic_map(2.5, 2000), x0, k=1, transient=200)
    assert abs(res.exponents[0].item() - math.log(0.5)) < 1e-6


def test_henon_largest_exponent_and_exact_sum():
    x0 = _rand(4, 2, seed=0, scale=0.05)  # near the origin, inside the basin of the attractor
    res = lyapunov(henon_map(1.4, 0.3, HENON_STEPS), x0, k=2, transient=200)
    assert abs(res.exponents[0].item() - HENON_LARGEST) < HENON_RTOL * HENON_LARGEST
    # det J = -b at every point: log|R_11| + log|R_22| = ln 0.3 at every step, so exactly here
    torch.testing.assert_close(res.per_example.sum(1), torch.full((4,), math.log(0.3), dtype=F64), rtol=0, atol=1e-12)


def test_rnn_linear_symmetric_spectrum_is_log_abs_eigenvalues():
    # Symmetric W: eigenvectors orthogonal, Benettin gives ln |lambda_i| in order once aligned.
    # The input shifts the state but not the Jacobian, so it changes nothing (claim V9).
    n = 4
    W = torch.diag(torch.tensor([1.3, -0.8, 0.5, 0.2], dtype=F64))
    Q, _ = torch.linalg.qr(_rand(n, n, seed=3))
    W = Q @ W @ Q.T
    expected = torch.log(torch.tensor([1.3, 0.8, 0.5, 0.2], dtype=F64))
    free = lyapunov(rnn_linear(W, 600), torch.zeros(1, n, dtype=F64), k=n, transient=300)
    driven = lyapunov(
        rnn_linear(W, 600, U=_rand(n, 2, seed=4), inputs=_rand(600, 1, 2, seed=5)),
        torch.zeros(1, n, dtype=F64),
        k=n,
        transient=300,
    )
    torch.testing.assert_close(free.exponents, expected, rtol=0, atol=EXACT_TOL)
    torch.testing.assert_close(driven.exponents, expected, rtol=0, atol=EXACT_TOL)


@pytest.mark.parametrize("rho,sign", [(0.9, -1), (1.1, 1)])
def test_rnn_linear_vanishes_below_and_explodes_above_radius_one(rho, sign):
    # Claims V9/V10: W = rho Q (Q orthogonal) has every exponent ln rho, one sign for all.
    Q, _ = torch.linalg.qr(_rand(5, 5, seed=6))
    res = lyapunov(rnn_linear(rho * Q, 100), torch.zeros(1, 5, dtype=F64), k=5)
    expected = torch.full((5,), math.log(rho), dtype=F64)
    torch.testing.assert_close(res.exponents, expected, rtol=0, atol=EXACT_TOL)
    assert (torch.sign(res.exponents) == sign).all()


def test_rnn_linear_non_normal_converges_to_ln_radius_like_one_over_length():
    # ||W||_2 = 5.1 but rho(W) = 0.9: one step can amplify 5x, yet the exponent is ln 0.9 < 0.
    # From a random frame with no transient the error is log(transient growth)/L: we test that
    # L * error stays bounded (below 3 here, measured 2.26) as L grows 100 -> 10^4.
    W = torch.tensor([[0.9, 5.0], [0.0, 0.5]], dtype=F64)
    expected = torch.tensor([math.log(0.9), math.log(0.5)], dtype=F64)
    errors = []
    for L in (100, 1000, 10_000):
        res = lyapunov(rnn_linear(W, L), torch.zeros(1, 2, dtype=F64), k=2)
        errors.append((res.exponents - expected).abs().max().item())
        assert L * errors[-1] < 3.0
    assert errors[2] < errors[1] / 5 < errors[0] / 25
    assert math.log(torch.linalg.matrix_norm(W, 2).item()) > 1.5  # the norm alone would say "explodes"


def test_rnn_tanh_small_gain_decays_to_linearisation_at_zero():
    # g = 0.5: h -> 0, where J = W, so the top exponent is ln rho(W) (a complex pair here).
    n = 50
    W = 0.5 * _rand(n, n, seed=7) / math.sqrt(n)
    res = lyapunov(rnn_tanh(W, 3000), _rand(2, n, seed=8), k=1, transient=500)
    rho = torch.linalg.eigvals(W).abs().max().item()
    assert abs(res.exponents[0].item() - math.log(rho)) < 1e-3


def test_rnn_tanh_large_gain_is_chaotic():
    # g = 3 (> 1): the discrete tanh RNN is chaotic at this size (measured top exponent 0.25/step).
    n = 50
    W = 3.0 * _rand(n, n, seed=7) / math.sqrt(n)
    res = lyapunov(rnn_tanh(W, 3000), _rand(2, n, seed=8), k=1, transient=500)
    assert res.exponents[0].item() > 0.1


def test_rnn_rejects_inputs_without_u():
    with pytest.raises(ValueError, match="U and inputs"):
        rnn_linear(torch.eye(2), 3, inputs=torch.zeros(3, 1, 2))
    with pytest.raises(ValueError, match="inputs must be"):
        rnn_tanh(torch.eye(2), 3, U=torch.eye(2), inputs=torch.zeros(4, 1, 2))
