"""Error control: what the tolerances mean, the norms of the error test, and the step-size controller.

Tolerances mean global accuracy. A step is accepted when ``rms(err / (atol + rtol |y|)) <= 1`` as
in SciPy, but with the tolerances scaled by `local_tolerance_factor` first: under per-step control an
order-p method's global error grows like (local tolerance)^(p / (p + 1)), i.e. like rtol^(2/3) for
BDF-2, which at rtol 1e-6 left it 700 rtol off on y' = -y over ten time constants (SciPy's BDF of
orders 1-5: 24 rtol). Asking each step for rtol^(3/2) (at most 100x tighter) brings the global error
near SciPy's (`tests/dynamics/test_ivp_accuracy.py`, `benchmarks/bdf2_vs_scipy.py`).
"""

from __future__ import annotations

import numpy as np

from depthscope.dynamics._newton import NEWTON_MAXITER
from depthscope.dynamics._ode_base import EPS, BatchFun

# Step-size bounds per decision: never shrink below 1/5 or grow above 10x at once.
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
# Step-size factor after a Newton failure with a fresh Jacobian and matching Newton matrix.
NEWTON_FAIL_FACTOR = 0.5
# Base safety factor of the step controller (scaled down further when Newton needed many iterations).
SAFETY = 0.9
# The step-size safety factor after n Newton iterations: SAFETY scaled down when Newton needed many.
SAFETY_BY_ITERATIONS = SAFETY * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + np.arange(NEWTON_MAXITER + 1))
# Initial step selection (Hairer, Norsett & Wanner, Solving ODEs I, II.4): first-guess fraction of
# |y|/|f|, the fallback step when y or f is tiny, and the growth cap over the first guess.
FIRST_STEP_FRACTION = 0.01
FIRST_STEP_FALLBACK = 1e-6
FIRST_STEP_TINY = 1e-5
FIRST_STEP_GROWTH = 100.0
# Floor of the per-step relative tolerance rtol * local_tolerance_factor(rtol): below ~100 eps the
# error test asks for more than float64 resolves (SciPy's floor on rtol, applied per step here).
LOCAL_RTOL_FLOOR = 100 * EPS
# Smallest factor on the tolerances of a step's error test (`local_tolerance_factor`): it caps the
# cost of accuracy at 4.6x the steps of per-step control; with it the global errors on the
# closed-form problems stay within 2.7x of SciPy's BDF (orders 1-5) at rtol 1e-6 and 2.1x at 1e-3.
LOCAL_FACTOR_MIN = 0.01


def local_tolerance_factor(rtol: float) -> float:
    """The factor applied to (rtol, atol) in each step's error test so that the global error tracks rtol.

    Per-step control with tolerance tau gives BDF-2 steps h ~ tau^(1/3) and a global error of about
    (steps) x tau ~ tau^(2/3) per unit of the solution's time scale. The factor ``sqrt(rtol)``
    (tau = rtol^(3/2)) makes it proportional to rtol down to rtol = LOCAL_FACTOR_MIN^2; below, the
    factor stays LOCAL_FACTOR_MIN. It costs ``factor^(-1/3)`` times the steps of per-step control at
    rtol (x3.2 at rtol 1e-3, x4.6 from 1e-4 down): what order 2 pays for that accuracy. Floored so
    the per-step rtol stays >= LOCAL_RTOL_FLOOR, below which float64 cannot resolve the test.
    """
    return min(1.0, max(LOCAL_FACTOR_MIN, float(np.sqrt(rtol)), LOCAL_RTOL_FLOOR / rtol))


def tolerances_for_local(local_rtol: float, local_atol: np.ndarray | float) -> tuple[float, np.ndarray | float]:
    """The (rtol, atol) whose per-step error test uses ``(local_rtol, local_atol)``: the inverse of
    `local_tolerance_factor`, for comparing with solvers whose tolerances are per step (SciPy's RK45
    and BDF) at equal step-controller settings. Exact for local_rtol above LOCAL_RTOL_FLOOR."""
    if local_rtol >= LOCAL_FACTOR_MIN**3:  # the sqrt branch: local = rtol^(3/2)
        rtol = float(local_rtol ** (2.0 / 3.0))
    else:
        rtol = float(local_rtol / LOCAL_FACTOR_MIN)
    return rtol, local_atol / local_tolerance_factor(rtol)


def rms_norm(x: np.ndarray) -> np.ndarray:
    """Root-mean-square over the last axis: (w, n) -> (w,)."""
    return np.sqrt(np.einsum("...i,...i->...", x, x) / x.shape[-1])


def rms_norm_columns(x: np.ndarray) -> np.ndarray:
    """Root-mean-square over the first axis: (n, w) -> (w,) (the solver's component-major layout)."""
    return np.sqrt(np.add.reduce(x * x, axis=0) / x.shape[0])


def rms_norm_columns_exact(x: np.ndarray) -> np.ndarray:
    """`rms_norm_columns` summed in the order of `rms_norm` (which einsum vectorises for n > 2)."""
    return np.sqrt(np.einsum("i...,i...->...", x, x) / x.shape[0])


def initial_step(
    fun: BatchFun,
    t: np.ndarray,
    t_end: float,
    y0: np.ndarray,
    f0: np.ndarray,
    rtol: float,
    atol: np.ndarray,
) -> np.ndarray:
    """Per-system first step for an order-1 start (Hairer, Norsett & Wanner I, II.4): (M,).

    Args:
        fun: the counted ``fun(t, Y)``; t: (M,) start times (all t0); t_end: end time.
        y0, f0: (M, n) initial states and ``fun(t, y0)``; rtol, atol (n,): per-step tolerances.
    """
    span = t_end - t[0]
    scale = atol + rtol * np.abs(y0)
    d0, d1 = rms_norm(y0 / scale), rms_norm(f0 / scale)
    tiny = (d0 < FIRST_STEP_TINY) | (d1 < FIRST_STEP_TINY) | ~np.isfinite(d1)
    h0 = np.where(tiny, FIRST_STEP_FALLBACK, FIRST_STEP_FRACTION * d0 / np.where(tiny, 1.0, d1))
    h0 = np.minimum(h0, span)
    f1 = fun(t + h0, y0 + h0[:, None] * f0)
    d2 = rms_norm((f1 - f0) / scale) / h0
    big = np.maximum(d1, d2)
    h1 = np.where(
        big <= 1e-15,
        np.maximum(FIRST_STEP_FALLBACK, h0 * 1e-3),
        (FIRST_STEP_FRACTION / np.where(big > 0, big, 1.0)) ** (1.0 / 2.0),
    )
    h = np.minimum(FIRST_STEP_GROWTH * h0, h1)
    return np.where(np.isfinite(h) & (h > 0), h, h0)
