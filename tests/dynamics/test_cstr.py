"""Tests of the CSTR models (claim J8) against closed forms and BDF-2 simulations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from depthscope._errors import InputError
from depthscope.dynamics import solve_ivp
from depthscope.dynamics._cstr import (
    CSTR,
    EXO_B,
    EXO_BETA,
    EXO_DAMKOHLER,
    EXO_GAMMA,
    exothermic_cstr,
    exothermic_starts,
    find_hopf,
    gray_scott,
    gray_scott_batch,
    gray_scott_hopf,
    gray_scott_starts,
    gray_scott_upper,
    steady_states,
)

K = 0.05  # the Gray-Scott decay rate of the claim
# The claim needs D_H to 1e-6; the steady states are exact to ~1e-14, so we ask for far more.
HOPF_TOL = 1e-9


def analytic_hopf(k: float) -> float:
    """Smaller root of (D + k)^2 = D sqrt(k): D^2 + (2k - sqrt k) D + k^2 = 0."""
    b = 2 * k - np.sqrt(k)
    return (-b - np.sqrt(b * b - 4 * k * k)) / 2


def gray_scott_closed_form(k: float, D: float) -> list[np.ndarray]:
    """Steady states: (1, 0) and, from a b = k + D and D (1 - a) = (k + D) b, the quadratic
    (k + D)/D b^2 - b + (k + D) = 0."""
    s = k + D
    disc = 1 - 4 * s * s / D
    states = [np.array([1.0, 0.0])]
    if disc > 0:
        for sign in (-1, 1):
            b = (1 + sign * np.sqrt(disc)) * D / (2 * s)
            states.append(np.array([s / b, b]))
    return states


def test_jacobian_is_closed_minus_dilution_identity():
    """J8: J_CSTR = J_closed - D I (autograd), and J_closed matches the hand-derived formula."""
    torch.manual_seed(0)
    D = 0.031
    reactor = gray_scott(K, D)
    for _ in range(5):
        x = torch.rand(2, dtype=torch.float64)
        a, b = x.tolist()
        J_closed = reactor.closed_jacobian(x).numpy()
        np.testing.assert_allclose(J_closed, [[-b * b, -2 * a * b], [b * b, 2 * a * b - K]], atol=1e-15)
        np.testing.assert_allclose(reactor.jacobian(x).numpy(), J_closed - D * np.eye(2), atol=1e-15)


def test_gray_scott_steady_states_match_closed_form():
    for D in (0.02, 0.03, 0.05):
        found = steady_states(gray_scott(K, D), gray_scott_starts())
        expected = gray_scott_closed_form(K, D)
        assert len(found) == len(expected) == 3
        for x in expected:
            assert min(np.max(np.abs(s.x - x)) for s in found) < 1e-10
        for s in found:  # the shift of every eigenvalue by -D
            np.testing.assert_allclose(
                np.sort_complex(s.eigenvalues), np.sort_complex(s.closed_eigenvalues - D), atol=1e-12
            )


def test_hopf_point_matches_analytic_value():
    result = gray_scott_hopf(K, (0.02, 0.05))
    assert abs(result.dilution - analytic_hopf(K)) < HOPF_TOL
    assert abs(result.dilution - 0.0254763) < 1e-6
    # at the Hopf point b^2 = k and the pair is +- i omega with omega^2 = det J = (k + D)(k - D)
    D = result.dilution
    assert abs(result.state.x[1] ** 2 - K) < 1e-9
    assert abs(result.frequency - np.sqrt((K + D) * (K - D))) < 1e-9
    # the closed reactor is unstable there (Re = +D_H > 0); dilution by exactly D_H neutralises it
    np.testing.assert_allclose(result.state.closed_eigenvalues.real, D, atol=1e-9)


def test_hopf_bracket_without_sign_change_is_an_error():
    with pytest.raises(InputError, match="same sign"):
        find_hopf(lambda D: gray_scott(K, D), gray_scott_upper, (0.03, 0.05), gray_scott_starts())


def test_dilution_stabilises_upper_state_only_above_hopf():
    """BDF-2 simulation: start 1e-3 off the upper state, integrate to t = 3000 (about ten periods
    of the linear oscillation): the perturbation grows below D_H and decays above it."""
    D_H = analytic_hopf(K)
    dilutions = np.array([D_H - 0.003, D_H + 0.004])
    uppers = [gray_scott_upper(steady_states(gray_scott(K, D), gray_scott_starts())) for D in dilutions]
    assert [u.stable for u in uppers] == [False, True]
    assert all(np.max(u.closed_eigenvalues.real) > 0 for u in uppers)  # closed reactor: unstable
    x_star = np.stack([u.x for u in uppers])
    kick = np.array([1e-3, -1e-3])
    fun, jac = gray_scott_batch(K, dilutions)
    res = solve_ivp(fun, (0.0, 3000.0), x_star + kick, rtol=1e-7, atol=1e-10, jac=jac, batched=True)
    assert res.success
    distance = np.linalg.norm(res.y[:, :, -1] - x_star, axis=1)
    start = np.linalg.norm(kick)
    assert distance[0] > 30 * start  # lost: the state leaves for the oscillation / washout
    assert distance[1] < start / 30  # kept: the perturbation dies out


def test_torch_reactor_simulates_with_autograd_jacobian():
    """The CSTR's torch right-hand side runs through solve_ivp (autograd Jacobian) and agrees
    with the numpy closed-form batch version."""
    D = 0.035
    reactor = gray_scott(K, D)
    x0 = np.array([0.4, 0.2])
    res = solve_ivp(reactor.ode, (0.0, 200.0), x0, rtol=1e-8, atol=1e-11)
    assert res.success and res.jac_source == "autograd"
    fun, jac = gray_scott_batch(K, np.array([D]))
    ref = solve_ivp(fun, (0.0, 200.0), x0[None], rtol=1e-8, atol=1e-11, jac=jac, batched=True)
    np.testing.assert_allclose(res.y[:, -1], ref.y[0, :, -1], rtol=1e-6, atol=1e-9)


def _heat_balance_roots() -> np.ndarray:
    """Independent oracle: at steady state c = D / (D + Da k(theta)) and the heat balance
    B Da k(theta) c = (beta + D) theta, with D = 1; roots by bracketing a scalar equation."""
    k = lambda th: EXO_DAMKOHLER * np.exp(th / (1 + th / EXO_GAMMA))  # noqa: E731
    g = lambda th: EXO_B * k(th) / (1 + k(th)) - (EXO_BETA + 1) * th  # noqa: E731
    grid = np.linspace(1e-6, EXO_B, 4001)
    vals = g(grid)
    roots = [
        scipy.optimize.brentq(g, grid[i], grid[i + 1], xtol=1e-14)
        for i in range(len(grid) - 1)
        if np.sign(vals[i]) != np.sign(vals[i + 1])
    ]
    return np.array(roots)


def test_exothermic_cstr_has_three_states_and_dilution_stabilises_the_outer_two():
    reactor = exothermic_cstr()
    states = steady_states(reactor, exothermic_starts())
    thetas = np.sort([s.x[1] for s in states])
    np.testing.assert_allclose(thetas, _heat_balance_roots(), rtol=1e-9)
    assert len(states) == 3
    by_theta = sorted(states, key=lambda s: s.x[1])
    low, middle, high = by_theta
    # the middle state is a saddle (Van Heerden: heat generation steeper than removal): det J < 0
    J_mid = reactor.jacobian(torch.from_numpy(middle.x)).numpy()
    assert np.linalg.det(J_mid) < 0 and not middle.stable
    assert middle.eigenvalues[0].real > 0 and middle.closed_eigenvalues[0].real > reactor.dilution
    # the outer two run away in the closed (batch) reactor, and the flow stabilises them
    for s in (low, high):
        assert np.max(s.closed_eigenvalues.real) > 0
        assert s.stable and s.stabilised_by_dilution
        np.testing.assert_allclose(
            np.sort_complex(s.eigenvalues), np.sort_complex(s.closed_eigenvalues - reactor.dilution), atol=1e-12
        )


def test_exothermic_simulation_settles_on_a_stable_state():
    """BDF-2 from near the saddle: the trajectory leaves it and ends on the low or high state."""
    reactor = exothermic_cstr()
    states = sorted(steady_states(reactor, exothermic_starts()), key=lambda s: s.x[1])
    start = states[1].x + np.array([0.0, 0.05])
    res = solve_ivp(reactor.ode, (0.0, 60.0), start, rtol=1e-7, atol=1e-10)
    assert res.success
    ends = [np.linalg.norm(res.y[:, -1] - s.x) for s in states]
    assert min(ends[0], ends[2]) < 1e-4 and ends[1] > 0.1


def test_feed_shape_must_match_stoichiometry():
    with pytest.raises(InputError, match="feed"):
        CSTR(
            stoich=torch.eye(2, dtype=torch.float64),
            rates=lambda x: x,
            feed=torch.zeros(3, dtype=torch.float64),
            dilution=0.1,
        )
