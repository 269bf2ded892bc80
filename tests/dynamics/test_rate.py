"""The Euler-stepped rate network h' = -h + J tanh(h) (Engelken, Wolf & Abbott 2020): tangent map,
full Lyapunov spectrum through `lyapunov`, and which identity for the mean exponent is exact."""

from __future__ import annotations

import math

import pytest
import torch

from depthscope.dynamics import random_rate_chain, rate_chain, rate_coupling, rate_euler_step, rate_step_log_det
from depthscope.estimators import lyapunov

F64 = torch.float64
N = 100
DT = 0.1
# 3000 Euler steps of 0.1 = 300 time constants, the first 1000 (100 tau) discarded as transient:
# enough for the top exponents to two digits at N = 100, and 1.5 s for the full spectrum (k = N).
STEPS = 3000
TRANSIENT = 1000
# Sum of the log|R_ii| of one QR = log|det| of the pushed frame: equal up to float64 rounding.
EXACT_TOL = 1e-10


def _h0(B: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, N, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.fixture(scope="module")
def chaotic():
    """g = 4: the full spectrum (k = N) and the trajectory it was measured on."""
    J = rate_coupling(N, 4.0, seed=0)
    chain = rate_chain(J, DT, STEPS)
    with torch.no_grad():
        states = chain.states(_h0())
    res = lyapunov(chain, _h0(), k=N, transient=TRANSIENT)
    return J, states, res


def test_coupling_has_no_self_coupling_and_variance_g2_over_n():
    J = rate_coupling(400, 2.0, seed=3)
    assert (torch.diagonal(J) == 0).all()
    off = J[~torch.eye(400, dtype=torch.bool)]
    # 159,600 samples: the std of the sample std is ~0.2%; 2% is ten of those
    assert off.std().item() == pytest.approx(2.0 / math.sqrt(400), rel=0.02)
    torch.testing.assert_close(rate_coupling(400, 2.0, seed=3), J)  # the seed fixes J


def test_euler_step_rounds_as_dt_times_the_product():
    """Regression: dt scales tanh(h) J^T after the product, the rounding claim V10 was recorded with;
    (dt tanh(h)) J^T differs in the last bits and moved V10's rate spectra."""
    J = rate_coupling(50, 4.0, seed=2)
    h = _h0(4, seed=5)[:, :50]
    expected = (1.0 - DT) * h + DT * (torch.tanh(h) @ J.T)
    torch.testing.assert_close(rate_euler_step(h, J, DT), expected, rtol=0, atol=0)


def test_analytic_jvp_matches_jacfwd():
    step = random_rate_chain(8, 3.0, DT, 1, seed=0)[0]
    h = torch.randn(3, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    V = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    y, jv = step.jvp(h, V)
    torch.testing.assert_close(y, step.fn(h), rtol=0, atol=0)
    for b in range(3):
        jac = torch.func.jacfwd(lambda x: step.fn(x.unsqueeze(0))[0])(h[b])
        torch.testing.assert_close(jv[:, b], V[:, b] @ jac.T, rtol=1e-12, atol=1e-12)
        # and the closed form J_step = (1 - dt) I + dt J diag(1 - tanh^2 h)
        J = step.fn.J
        closed = (1 - DT) * torch.eye(8, dtype=F64) + DT * J * (1 - torch.tanh(h[b]) ** 2)
        torch.testing.assert_close(jac, closed, rtol=1e-12, atol=1e-12)


def test_sum_of_exponents_is_mean_log_det_exactly(chaotic):
    # The identity that is exact for the discrete map, at any run length: sum_i lambda_i (per
    # step) = mean over the averaged steps of log|det J_step(h_k)|.
    J, states, res = chaotic
    log_dets = torch.cat([rate_step_log_det(J, DT, h) for h in states[TRANSIENT:STEPS]])
    assert res.exponents.sum().item() == pytest.approx(log_dets.mean().item(), abs=EXACT_TOL)


def test_euler_mean_exponent_is_ln_one_minus_dt_over_dt_to_second_order(chaotic):
    # log det J_step = N ln(1 - dt) + log det(I + eps J D), eps = dt/(1 - dt); tr(J D) = 0 since
    # J_ii = 0, so the first correction is -eps^2 tr((J D)^2) / 2. Measured at g = 4, dt = 0.1:
    # mean = -1.05124 per unit time, ln(1 - dt)/dt = -1.05361, second-order term +0.00242.
    J, states, res = chaotic
    mean = res.exponents.mean().item() / DT  # per unit time
    eps = DT / (1 - DT)
    tr2 = (
        torch.stack(
            [
                torch.trace((J * (1 - torch.tanh(h[0]) ** 2)) @ (J * (1 - torch.tanh(h[0]) ** 2)))
                for h in states[TRANSIENT:STEPS]
            ]
        )
        .mean()
        .item()
    )
    second_order = -(eps**2) * tr2 / (2 * N) / DT
    euler = math.log(1 - DT) / DT
    assert abs(mean - euler) < 0.005  # ln(1 - dt)/dt holds to 0.5% ...
    assert mean - euler == pytest.approx(second_order, rel=0.1)  # ... the rest is the eps^2 term
    assert abs(mean + 1.0) > 0.04  # ... and the flow's -1 does not hold for the map at dt = 0.1


@pytest.mark.parametrize("dt", [1e-1, 1e-2, 1e-3])
def test_mean_exponent_tends_to_minus_one_as_dt_to_zero(dt):
    # Continuous time (Liouville): the exponents sum to the time average of tr(-I + J D) = -N, so
    # the flow's mean exponent is -1 exactly. The map's (1/(N dt)) log det J_step -> -1 like O(dt):
    # ln(1 - dt)/dt = -1 - dt/2 - ..., plus the O(dt g^2/N) second-order term.
    J = rate_coupling(N, 4.0, seed=0)
    h = 2.0 * _h0(B=8, seed=5)
    per_time = rate_step_log_det(J, dt, h) / (N * dt)
    assert (per_time + 1).abs().max().item() < 1.0 * dt
    assert (per_time - math.log(1 - dt) / dt).abs().max().item() < 0.1 * dt


def test_full_spectrum_shape_order_and_chaos(chaotic):
    _, _, res = chaotic
    ex = res.exponents / DT  # per unit time
    assert ex.shape == (N,)
    assert (ex[1:] <= ex[:-1]).all()
    # g = 4 is deep in the chaotic phase: several positive exponents (measured: 3, top 0.205/tau)
    assert ex[0] > 0.1
    assert (ex > 0).sum() >= 2


def test_no_positive_exponent_below_the_transition():
    # g = 0.5 < 1: h -> 0, where J_step = (1 - dt) I + dt J; the top exponent is the log modulus of
    # its top eigenvalue (a complex pair here; -0.5401 per unit time). Measured error 1e-4.
    J = rate_coupling(N, 0.5, seed=0)
    res = lyapunov(rate_chain(J, DT, 2000), _h0(), k=1, transient=500)
    M = (1 - DT) * torch.eye(N, dtype=F64) + DT * J
    top = torch.linalg.eigvals(M).abs().max().log().item()
    assert res.exponents[0].item() < 0
    assert res.exponents[0].item() / DT == pytest.approx(top / DT, abs=0.005)


def test_rate_chain_rejects_bad_dt():
    with pytest.raises(ValueError, match="dt"):
        rate_chain(torch.zeros(3, 3), 1.5, 10)
