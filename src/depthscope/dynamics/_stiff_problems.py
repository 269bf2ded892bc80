"""Stiff test problems of the IVP test set (Hairer & Wanner; Mazzia & Magherini, Bari test set), and
problems with closed-form solutions for checking that global errors follow the tolerance.

Each problem carries its right-hand side, its analytic Jacobian, the interval, and the published
reference solution at the final time (the constants are those of the test set reports; the code
is ours). ``scd`` is the test set's accuracy measure: significant correct digits at the end,
``-log10(max_i |y_i - ref_i| / |ref_i|)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# ROBER (Robertson's autocatalytic reaction) rate constants k1, k2, k3.
ROBER_K1, ROBER_K2, ROBER_K3 = 0.04, 3e7, 1e4
# Van der Pol stiffness parameter for the unscaled form y'' = mu (1 - y^2) y' - y on [0, 2000].
VDPOL_MU = 1000.0
# OREGO (Field-Noyes Oregonator) constants s, q, w of the test set.
OREGO_S, OREGO_Q, OREGO_W = 77.27, 8.375e-6, 0.161
# HIRES (plant physiology, Schafer 1975): the fast rate constant k+ of the y6 * y8 reaction.
HIRES_K = 280.0


@dataclass(frozen=True)
class StiffProblem:
    """One test problem.

    Attributes:
        name: test set name.
        fun: ``fun(t, y)`` with y (n,) -> (n,) numpy.
        jac: ``jac(t, y)`` -> (n, n) analytic Jacobian.
        y0: (n,) initial state; t_span: (t0, t_end).
        y_ref: (n,) reference solution at t_end (test set report).
        atol: absolute tolerance used by the benchmark (scalar or (n,)).
    """

    name: str
    fun: Callable[[float, np.ndarray], np.ndarray]
    jac: Callable[[float, np.ndarray], np.ndarray]
    y0: np.ndarray
    t_span: tuple[float, float]
    y_ref: np.ndarray
    atol: float | np.ndarray


def scd(y: np.ndarray, y_ref: np.ndarray) -> float:
    """Significant correct digits ``-log10(max_i |y_i - ref_i| / |ref_i|)`` of y (n,) against y_ref (n,)."""
    rel = np.max(np.abs(np.asarray(y) - y_ref) / np.abs(y_ref))
    return float(-np.log10(rel)) if rel > 0 else float("inf")


def max_relative_error(y: np.ndarray, y_ref: np.ndarray) -> float:
    """``max_i |y_i - ref_i| / |ref_i|`` for y, y_ref (n,)."""
    return float(np.max(np.abs(np.asarray(y) - y_ref) / np.abs(y_ref)))


# -- ROBER -------------------------------------------------------------------------------------
def rober_fun(t: float, y: np.ndarray) -> np.ndarray:
    r1, r2, r3 = ROBER_K1 * y[0], ROBER_K2 * y[1] ** 2, ROBER_K3 * y[1] * y[2]
    return np.array([-r1 + r3, r1 - r2 - r3, r2])


def rober_jac(t: float, y: np.ndarray) -> np.ndarray:
    a, b, c = ROBER_K1, 2 * ROBER_K2 * y[1], ROBER_K3
    return np.array(
        [
            [-a, c * y[2], c * y[1]],
            [a, -b - c * y[2], -c * y[1]],
            [0.0, b, 0.0],
        ]
    )


# -- VDPOL -------------------------------------------------------------------------------------
def vdpol_fun(t: float, y: np.ndarray) -> np.ndarray:
    return np.array([y[1], VDPOL_MU * (1.0 - y[0] ** 2) * y[1] - y[0]])


def vdpol_jac(t: float, y: np.ndarray) -> np.ndarray:
    return np.array([[0.0, 1.0], [-2.0 * VDPOL_MU * y[0] * y[1] - 1.0, VDPOL_MU * (1.0 - y[0] ** 2)]])


# -- HIRES -------------------------------------------------------------------------------------
# The linear part of HIRES (every term except the bilinear k+ y6 y8) and its constant source.
_HIRES_A = np.array(
    [
        [-1.71, 0.43, 8.32, 0, 0, 0, 0, 0],
        [1.71, -8.75, 0, 0, 0, 0, 0, 0],
        [0, 0, -10.03, 0.43, 0.035, 0, 0, 0],
        [0, 8.32, 1.71, -1.12, 0, 0, 0, 0],
        [0, 0, 0, 0, -1.745, 0.43, 0.43, 0],
        [0, 0, 0, 0.69, 1.71, -0.43, 0.69, 0],
        [0, 0, 0, 0, 0, 0, -1.81, 0],
        [0, 0, 0, 0, 0, 0, 1.81, 0],
    ]
)
_HIRES_SOURCE = np.array([0.0007, 0, 0, 0, 0, 0, 0, 0])
# d(y6, y7, y8)'/d(k+ y6 y8) = (-1, +1, -1)
_HIRES_BILINEAR = np.array([0, 0, 0, 0, 0, -1.0, 1.0, -1.0])


def hires_fun(t: float, y: np.ndarray) -> np.ndarray:
    return _HIRES_A @ y + _HIRES_SOURCE + HIRES_K * y[5] * y[7] * _HIRES_BILINEAR


def hires_jac(t: float, y: np.ndarray) -> np.ndarray:
    J = _HIRES_A.copy()
    J[:, 5] += HIRES_K * y[7] * _HIRES_BILINEAR
    J[:, 7] += HIRES_K * y[5] * _HIRES_BILINEAR
    return J


# -- OREGO -------------------------------------------------------------------------------------
def orego_fun(t: float, y: np.ndarray) -> np.ndarray:
    return np.array(
        [
            OREGO_S * (y[1] - y[0] * y[1] + y[0] - OREGO_Q * y[0] ** 2),
            (-y[1] - y[0] * y[1] + y[2]) / OREGO_S,
            OREGO_W * (y[0] - y[2]),
        ]
    )


def orego_jac(t: float, y: np.ndarray) -> np.ndarray:
    s, q, w = OREGO_S, OREGO_Q, OREGO_W
    return np.array(
        [
            [s * (1.0 - y[1] - 2.0 * q * y[0]), s * (1.0 - y[0]), 0.0],
            [-y[1] / s, -(1.0 + y[0]) / s, 1.0 / s],
            [w, 0.0, -w],
        ]
    )


ROBER = StiffProblem(
    name="ROBER",
    fun=rober_fun,
    jac=rober_jac,
    y0=np.array([1.0, 0.0, 0.0]),
    t_span=(0.0, 1e11),
    y_ref=np.array([0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050]),
    atol=np.array([1e-10, 1e-14, 1e-10]),
)
VDPOL = StiffProblem(
    name="VDPOL",
    fun=vdpol_fun,
    jac=vdpol_jac,
    y0=np.array([2.0, 0.0]),
    t_span=(0.0, 2000.0),
    y_ref=np.array([0.1706167732170469e1, -0.8928097010248125e-3]),
    atol=1e-6,
)
HIRES = StiffProblem(
    name="HIRES",
    fun=hires_fun,
    jac=hires_jac,
    y0=np.array([1.0, 0, 0, 0, 0, 0, 0, 0.0057]),
    t_span=(0.0, 321.8122),
    y_ref=np.array(
        [
            0.7371312573325668e-3,
            0.1442485726316185e-3,
            0.5888729740967575e-4,
            0.1175651343283149e-2,
            0.2386356198831331e-2,
            0.6238968252742796e-2,
            0.2849998395185769e-2,
            0.2850001604814231e-2,
        ]
    ),
    atol=1e-10,
)
OREGO = StiffProblem(
    name="OREGO",
    fun=orego_fun,
    jac=orego_jac,
    y0=np.array([1.0, 2.0, 3.0]),
    t_span=(0.0, 360.0),
    y_ref=np.array([0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3]),
    atol=1e-6,
)

STIFF_PROBLEMS: dict[str, StiffProblem] = {p.name: p for p in (ROBER, VDPOL, HIRES, OREGO)}


# -- closed-form problems (tolerance checks: the global error against the exact solution) --------
# Stiff rate of the scalar and Prothero-Robinson problems: 1e4 times the slow scale of their solutions.
CLOSED_FORM_STIFF_RATE = -1.0e4
# Rates of the linear system's modes: one slow, two fast (stiffness ratio 1000).
LINEAR_SYSTEM_RATES = np.array([-1.0, -30.0, -1000.0])


@dataclass(frozen=True)
class ClosedFormProblem:
    """A test problem whose exact solution is known at every t.

    Attributes:
        name: short label.
        fun: ``fun(t, y)`` with y (n,) -> (n,) numpy; jac: ``jac(t, y)`` -> (n, n).
        y0: (n,) initial state; t_span: (t0, t_end).
        exact: ``exact(t)`` with t (T,) -> (n, T), the solution.
        condition: how many times one step's relative error the exact flow can accumulate over the
            interval: the number of time constants for decay (relative errors of e^{-t} add up),
            1 / (1 - t_end) for y = 1 / (1 - t) (the growth of a relative perturbation made at t = 0),
            1 where the stiff part damps every error. Global errors are judged per unit of it.
    """

    name: str
    fun: Callable[[float, np.ndarray], np.ndarray]
    jac: Callable[[float, np.ndarray], np.ndarray]
    y0: np.ndarray
    t_span: tuple[float, float]
    exact: Callable[[np.ndarray], np.ndarray]
    condition: float


def global_relative_error(problem: ClosedFormProblem, t: np.ndarray, y: np.ndarray) -> float:
    """``max_t ||y(t) - exact(t)||_2 / ||exact(t)||_2`` over the output times t (T,), y (n, T)."""
    ref = problem.exact(np.asarray(t, dtype=np.float64))
    return float(np.max(np.linalg.norm(y - ref, axis=0) / np.linalg.norm(ref, axis=0)))


def _linear_system() -> tuple[np.ndarray, np.ndarray]:
    """A = Q diag(LINEAR_SYSTEM_RATES) Q^T with a fixed rotation Q: returns A (3, 3), Q (3, 3)."""
    Q, _ = np.linalg.qr(np.array([[1.0, 2.0, 0.5], [-1.0, 0.5, 1.5], [0.3, -1.2, 2.0]]))
    return Q @ np.diag(LINEAR_SYSTEM_RATES) @ Q.T, Q


_LIN_A, _LIN_Q = _linear_system()
_LIN_Y0 = np.array([1.0, 1.0, 1.0])
_LAM = CLOSED_FORM_STIFF_RATE


def _pr_fun(t: float, y: np.ndarray) -> np.ndarray:
    """Prothero-Robinson y' = lambda (y - g) + g' with g = 2 + cos t: the solution from g(0) is g."""
    return _LAM * (y - 2.0 - np.cos(t)) - np.sin(t)


CLOSED_FORM_PROBLEMS: dict[str, ClosedFormProblem] = {
    p.name: p
    for p in (
        ClosedFormProblem(
            "decay",
            lambda t, y: -y,
            lambda t, y: -np.eye(1),
            np.array([1.0]),
            (0.0, 10.0),
            lambda t: np.exp(-t)[None],
            condition=10.0,
        ),
        ClosedFormProblem(
            "blow-up 0.9",
            lambda t, y: y * y,
            lambda t, y: np.diag(2.0 * y),
            np.array([1.0]),
            (0.0, 0.9),
            lambda t: (1.0 / (1.0 - t))[None],
            condition=10.0,
        ),
        ClosedFormProblem(
            "blow-up 0.99",
            lambda t, y: y * y,
            lambda t, y: np.diag(2.0 * y),
            np.array([1.0]),
            (0.0, 0.99),
            lambda t: (1.0 / (1.0 - t))[None],
            condition=100.0,
        ),
        ClosedFormProblem(
            "stiff decay",
            lambda t, y: _LAM * y,
            lambda t, y: _LAM * np.eye(1),
            np.array([1.0]),
            (0.0, -5.0 / _LAM),
            lambda t: np.exp(_LAM * t)[None],
            condition=5.0,
        ),
        ClosedFormProblem(
            "Prothero-Robinson",
            _pr_fun,
            lambda t, y: _LAM * np.eye(1),
            np.array([3.0]),
            (0.0, 10.0),
            lambda t: (2.0 + np.cos(t))[None],
            condition=1.0,
        ),
        ClosedFormProblem(
            "linear system",
            lambda t, y: _LIN_A @ y,
            lambda t, y: _LIN_A,
            _LIN_Y0,
            (0.0, 3.0),
            lambda t: _LIN_Q @ (np.exp(np.outer(LINEAR_SYSTEM_RATES, t)) * (_LIN_Q.T @ _LIN_Y0)[:, None]),
            condition=3.0,
        ),
    )
}
