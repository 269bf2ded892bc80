"""Variable-step BDF of orders 1 and 2 ("BDF-2") for one or many independent stiff systems.

The state of each system is kept as backward differences of the solution taken with its current
step h (the quasi-constant-step form of Shampine & Reichelt, *The MATLAB ODE suite*, 1997):
``D[0] = y_n, D[1] = nabla y_n, D[2] = nabla^2 y_n``. With ``gamma_k = sum_{j<=k} 1/j`` the BDF of
order k reads ``sum_{j<=k} (1/j) nabla^j y_{n+1} = h f(t_{n+1}, y_{n+1})``; writing
``y_{n+1} = y_pred + d`` with the predictor ``y_pred = sum_{j<=k} D[j]`` it becomes

    R(d) = d - h beta0 f(t_{n+1}, y_pred + d) + psi = 0,   beta0 = 1 / gamma_k,
    psi = (sum_{j=1..k} gamma_j D[j]) / gamma_k,

whose Newton matrix is ``I - h beta0 J`` (claim J7; beta0 = 2/3 at order 2). ``d`` is also the
(k+1)-th backward difference of the new solution, so ``ERROR_CONST[k] * d`` estimates the error the
step adds to the solution. A change of step h -> rho h re-expresses the differences on the new grid
(closed form in `rescale_differences`). Order 1 (backward Euler) starts the integration; afterwards
the order moves between 1 and 2 to whichever allows the larger step.

Tolerances mean global accuracy. A step is accepted when ``rms(err / (atol + rtol |y|)) <= 1`` as
in SciPy, but with the tolerances scaled by `local_tolerance_factor` first: under per-step control an
order-p method's global error grows like (local tolerance)^(p / (p + 1)), i.e. like rtol^(2/3) for
BDF-2, which at rtol 1e-6 left it 700 rtol off on y' = -y over ten time constants (SciPy's BDF of
orders 1-5: 24 rtol). Asking each step for rtol^(3/2) (at most 100x tighter) brings the global error
near SciPy's (`tests/dynamics/test_ivp_accuracy.py`, `benchmarks/bdf2_vs_scipy.py`).

Every system of a batch has its own t, h, order, Jacobian and Newton matrix; the systems advance
in lockstep rounds (one attempted step each per round) so that one call of ``fun`` on the whole
batch serves them all. The slowest system sets the number of rounds, so a round is built to cost
little once few systems are left: finished systems drop out of the arrays a round touches, all
outcomes are handled by masks rather than gathers, and 1x1 and 2x2 Newton matrices are inverted in
closed form (layout and details in `BDF2Integrator`). Everything here is float64 numpy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

# float64 unit roundoff.
EPS = np.finfo(np.float64).eps
# Highest BDF order used; BDF-1 and BDF-2 are A- and L-stable, higher orders are not A-stable.
MAX_ORDER = 2
# gamma_k = sum_{j<=k} 1/j: the leading coefficient of the order-k BDF in backward differences.
GAMMA = np.array([0.0, 1.0, 1.5])
# beta0 = 1/gamma_k: the weight of h f(t_{n+1}, y_{n+1}) in the normalised BDF; the Newton matrix is
# I - h beta0 J (BDF-1: beta0 = 1, BDF-2: beta0 = 2/3).
BETA0 = np.array([0.0, 1.0, 2.0 / 3.0])
# The error a step of order k adds to the solution = ERROR_CONST[k] * nabla^{k+1} y: the truncation
# term 1/(k+1) of h D = -log(1 - nabla) (backward Euler 1/2, BDF-2 1/3; SciPy's BDF with kappa = 0).
# Divided by gamma_k (2/9 at order 2) it is the error of one step from an exact history, but the
# order-2 history carries each error forward: the principal root of BDF-2 deviates from e^{h lambda}
# by 1/3 h^3 lambda^3, and the per-step errors measured on y' = -y were 1.5x the 2/9 estimate.
ERROR_CONST = np.array([0.0, 1.0 / 2.0, 1.0 / 3.0])
# Rows of the difference array: D[0..k] for the order-k method, plus D[k+1], D[k+2] kept to
# estimate the errors of the neighbouring orders.
N_DIFFERENCES = MAX_ORDER + 3
# Newton iterations per attempted step before giving up (Hairer & Wanner use 4 to 7 for BDF).
NEWTON_MAXITER = 4
# Newton stops once the predicted remaining iteration error is below this fraction of the error
# tolerance (CVODE-style; Hairer's sqrt(rtol) <= 3% rule costs 20-40% more evaluations on the test set
# for no accuracy gained at matched error, measured with benchmarks/bdf2_vs_scipy.py).
NEWTON_TOL = 0.2
# The convergence rate of the previous step's Newton iteration, raised to this power, predicts the
# current one so a step may stop after one iteration (the "faccon" rule of RADAU5).
ETA_EXPONENT = 0.8
# -1 / (k + 1): the exponent turning an order-k error estimate into a step-size factor.
STEP_EXPONENT = np.array([np.nan, -1.0 / 2.0, -1.0 / 3.0])
# Step-size bounds per decision: never shrink below 1/5 or grow above 10x at once.
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
# Step-size factor after a Newton failure with a fresh Jacobian and matching Newton matrix.
NEWTON_FAIL_FACTOR = 0.5
# Base safety factor of the step controller (scaled down further when Newton needed many iterations).
SAFETY = 0.9
# The step-size safety factor after n Newton iterations: SAFETY scaled down when Newton needed many.
SAFETY_BY_ITERATIONS = SAFETY * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + np.arange(NEWTON_MAXITER + 1))
# Keep the factorised Newton matrix while h beta0 differs from the one it was built with by less
# than this relative amount; the residual always uses the true h, so a stale matrix only slows Newton.
LU_REUSE_RTOL = 0.3
# A step below this many units in the last place of t cannot advance t reliably: report failure.
MIN_STEP_ULPS = 10.0
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

# Non-finite entries or components named in a failure message before the rest are only counted.
MAX_NAMED_ENTRIES = 4

BatchFun = Callable[[np.ndarray, np.ndarray], np.ndarray]


def nonfinite_entries(a: np.ndarray, shape: tuple[int, ...]) -> str:
    """Where ``a`` (flattened ``shape``) is NaN or infinite, as text: "(0, 1), (1, 1)" for a matrix,
    "2, 3" for a vector, the first MAX_NAMED_ENTRIES named and the rest counted ("... and 5 more")."""
    bad = np.argwhere(~np.isfinite(np.asarray(a).reshape(shape)))
    named = ", ".join(
        str(tuple(int(i) for i in b)) if len(shape) > 1 else str(int(b[0])) for b in bad[:MAX_NAMED_ENTRIES]
    )
    return named + (f" and {len(bad) - MAX_NAMED_ENTRIES} more" if len(bad) > MAX_NAMED_ENTRIES else "")


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


def rescale_differences(D: np.ndarray, rho: np.ndarray, order: np.ndarray) -> None:
    """Re-express backward differences for a step changed by ``rho`` (in place).

    The interpolant through the last points is ``p(s) = D0 + s D1 + s (s + 1) / 2 D2`` (s in units
    of the old step). Its differences on the grid of spacing ``rho`` are
    ``D1' = rho D1 + rho (1 - rho) / 2 D2`` and ``D2' = rho^2 D2``. Order-1 systems have no D2 term
    and keep their D2 row untouched (it is rewritten before it is next read).

    Args:
        D: (w, N_DIFFERENCES, n) difference arrays of w systems.
        rho: (w,) new step / old step.
        order: (w,) current order of each system, 1 or 2.
    """
    rho = rho[:, None]
    two = (order == 2)[:, None]
    D[:, 1] = rho * D[:, 1] + np.where(two, 0.5 * rho * (1.0 - rho) * D[:, 2], 0.0)
    D[:, 2] = np.where(two, rho * rho * D[:, 2], D[:, 2])


def newton_matrix(J: np.ndarray, h: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The Newton matrix ``I - h beta0 J`` of the order-k BDF (claim J7).

    Args:
        J: (w, n, n) Jacobians; h: (w,) steps; order: (w,) BDF orders (1 or 2).
    Returns:
        (w, n, n).
    """
    c = np.asarray(h, dtype=np.float64) * BETA0[np.asarray(order)]
    return np.eye(J.shape[-1]) - c[:, None, None] * J


def rms_norm(x: np.ndarray) -> np.ndarray:
    """Root-mean-square over the last axis: (w, n) -> (w,)."""
    return np.sqrt(np.einsum("...i,...i->...", x, x) / x.shape[-1])


def rms_norm_columns(x: np.ndarray) -> np.ndarray:
    """Root-mean-square over the first axis: (n, w) -> (w,) (the solver's component-major layout)."""
    return np.sqrt(np.add.reduce(x * x, axis=0) / x.shape[0])


def rms_norm_columns_exact(x: np.ndarray) -> np.ndarray:
    """`rms_norm_columns` summed in the order of `rms_norm` (which einsum vectorises for n > 2)."""
    return np.sqrt(np.einsum("i...,i...->...", x, x) / x.shape[0])


@dataclass
class CoreOutput:
    """What the integrator hands to the front end (arrays indexed by system m of M)."""

    t_final: np.ndarray  # (M,) time reached
    y_final: np.ndarray  # (M, n) state reached
    status: np.ndarray  # (M,) 0 = reached t_end, -1 = failed
    messages: list[str]  # (M,) why each system stopped
    steps_t: list[float]  # accepted step times (recorded for system 0 when record_steps)
    steps_y: list[np.ndarray]  # accepted states (n,) of system 0
    y_eval: np.ndarray | None  # (M, n, T) dense output at t_eval (NaN where not reached)
    nfev: int  # calls of fun (each call evaluates the whole batch)
    njev: int  # calls of jac
    nlu: int  # Newton matrices factorised, summed over systems
    nsteps: np.ndarray  # (M,) accepted steps
    nrejected: np.ndarray  # (M,) rejected attempts (error test or Newton failure)


class BDF2Integrator:
    """Advance M independent systems ``y' = f(t, y)`` from t0 to t_end with variable-step BDF-2.

    Args:
        fun: ``fun(t, Y)`` with t (M,), Y (M, n) -> (M, n); rows are independent systems.
        jac: ``jac(t, Y)`` with t (M,), Y (M, n) -> (M, n, n) Jacobians d f_m / d y_m.
        t0, t_end: start and end time, t_end > t0.
        y0: (M, n) initial states.
        rtol: relative tolerance (scalar); atol: (n,) absolute tolerances. The global error is
            held near them: each step's test uses them times `local_tolerance_factor` (rtol).
        first_step: (M,) initial steps or None (chosen from f and its change).
        max_step: upper bound on every step.
        t_eval: (T,) sorted times in [t0, t_end] for dense output, or None.
        record_steps: keep every accepted (t, y) of system 0 (the unbatched front end).
        max_steps: accepted steps per system before giving up, or None.

    Layout. Per-system state lives in *positions*: the w systems still running occupy positions
    0..w-1 (``ids[p]`` is the system at position p, ``pos_of`` the inverse), and a system that
    finishes or fails is moved past them, keeping its final state. So every per-round operation
    works on contiguous slices ``[:w]`` (views, no gathers) and costs nothing for systems that are
    done, which matters because the slowest system sets the number of rounds. Vectors are stored
    component-major, (n, M), so that per-system scalars broadcast along the long axis. ``fun`` and
    ``jac`` still see the whole batch in the caller's order; finished systems sit at their final
    state there.
    """

    def __init__(
        self,
        fun: BatchFun,
        jac: Callable[[np.ndarray, np.ndarray], np.ndarray],
        t0: float,
        t_end: float,
        y0: np.ndarray,
        rtol: float,
        atol: np.ndarray,
        first_step: np.ndarray | None,
        max_step: float,
        t_eval: np.ndarray | None,
        record_steps: bool,
        max_steps: int | None,
    ):
        self.fun_raw, self.jac_raw = fun, jac
        self.t_end = float(t_end)
        M, n = y0.shape
        self.M, self.n = M, n
        # The per-step tolerances (see `local_tolerance_factor`); every test below uses these.
        factor = local_tolerance_factor(float(rtol))
        self.rtol, self.atol = factor * float(rtol), factor * np.asarray(atol, dtype=np.float64)
        self.atol_col = self.atol[:, None]
        self.max_step = float(max_step)
        self.max_steps = max_steps
        self.newton_tol = max(10.0 * EPS / self.rtol, NEWTON_TOL)
        # A step this close to the end of the interval snaps onto it.
        self.end_tol = MIN_STEP_ULPS * np.spacing(self.t_end)
        # No step at or above this is below MIN_STEP_ULPS units in the last place of any t in the span.
        self.h_floor = MIN_STEP_ULPS * max(abs(np.spacing(float(t0))), abs(np.spacing(self.t_end)))
        self.nfev = self.njev = self.nlu = 0
        self.single = M == 1

        # Position-ordered state (see the class docstring); status and messages by system.
        self.w = M
        self.ids = np.arange(M)
        self.pos_of = np.arange(M)
        self.t = np.full(M, float(t0))
        self.D = np.zeros((N_DIFFERENCES, n, M))
        self.D[0] = y0.T
        self.order = np.ones(M, dtype=np.int64)
        self.n_equal = np.zeros(M, dtype=np.int64)
        self.eta = np.ones(M)  # last Newton contraction estimate rate / (1 - rate)
        self.status = np.zeros(M, dtype=np.int64)
        self.messages = ["" for _ in range(M)]
        self.nsteps = np.zeros(M, dtype=np.int64)
        self.nrejected = np.zeros(M, dtype=np.int64)
        # Factorised Newton matrices I - c J: one system by LU, a batch by explicit inverses (n, n, M)
        # so that a Newton solve is one batched matrix-vector product. c_lu is the c each was built
        # with, NaN where none is usable (never built, invalidated, or singular).
        self.inv = np.zeros((n, n, M))
        self.lu: tuple[np.ndarray, np.ndarray] | None = None
        self.c_lu = np.full(M, np.nan)
        # Norm over components: one system keeps the summation order of `rms_norm`.
        self._norm = rms_norm_columns_exact if self.single else rms_norm_columns
        # The arguments of fun in position order: running systems are overwritten before each call.
        self.Ypos = np.array(y0, dtype=np.float64)
        self.Tpos = self.t.copy()

        f0 = self.fun(self.t, y0)
        not_finite = ~np.isfinite(f0).all(axis=1)
        self.h = self._initial_step(y0, f0) if first_step is None else first_step.astype(float)
        self.h = np.minimum(self.h, min(self.max_step, self.t_end - t0))
        self.D[1] = (self.h[:, None] * np.where(np.isfinite(f0), f0, 0.0)).T
        # Jacobians, component-major (n * n, M): row i * n + j holds d f_i / d y_j; position order.
        self.J = self.jac(self.t, y0).reshape(M, n * n).T.copy()
        self.jac_fresh = np.ones(M, dtype=bool)
        # Why a system's last attempt failed, by system id, when fun gave NaN/Inf there: named in the
        # message if its step then collapses. Jacobians with NaN/Inf (by system id) stop it next round.
        self.fun_nonfinite: dict[int, str] = {}
        self.jac_nonfinite: dict[int, str] = {}

        self.record_steps = record_steps
        self.steps_t: list[float] = [float(t0)]
        self.steps_y: list[np.ndarray] = [y0[0].copy()]
        self.t_eval = t_eval
        self.y_eval = None
        if t_eval is not None:
            self.y_eval = np.full((M, n, len(t_eval)), np.nan)  # by system
            first = int(np.searchsorted(t_eval, t0, side="right"))
            self.next_eval = np.full(M, first)  # by position: the next t_eval index to fill
            self.next_time = np.full(M, t_eval[first] if first < len(t_eval) else np.inf)
            self.y_eval[:, :, :first] = y0[:, :, None]
            self.eval_min = self.next_time[0]  # the earliest next_time of the running systems
        if not_finite.any():
            self._fail(np.flatnonzero(not_finite), "fun(t0, y0) is not finite")
        w = self.w  # the systems still running sit at positions 0..w-1
        self._check_jacobians(np.arange(w), self.t[:w], self.D[0][:, :w])
        if self.jac_nonfinite:
            self._fail_jacobians()

    # -- evaluations ------------------------------------------------------------------------
    def fun(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        self.nfev += 1
        return self.fun_raw(t, Y)

    def jac(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        self.njev += 1
        return self.jac_raw(t, Y)

    def _initial_step(self, y0: np.ndarray, f0: np.ndarray) -> np.ndarray:
        """Per-system first step (Hairer, Norsett & Wanner I, II.4) for the order-1 start: (M,)."""
        span = self.t_end - self.t[0]
        scale = self.atol + self.rtol * np.abs(y0)
        d0, d1 = rms_norm(y0 / scale), rms_norm(f0 / scale)
        tiny = (d0 < FIRST_STEP_TINY) | (d1 < FIRST_STEP_TINY) | ~np.isfinite(d1)
        h0 = np.where(tiny, FIRST_STEP_FALLBACK, FIRST_STEP_FRACTION * d0 / np.where(tiny, 1.0, d1))
        h0 = np.minimum(h0, span)
        f1 = self.fun(self.t + h0, y0 + h0[:, None] * f0)
        d2 = rms_norm((f1 - f0) / scale) / h0
        big = np.maximum(d1, d2)
        h1 = np.where(
            big <= 1e-15,
            np.maximum(FIRST_STEP_FALLBACK, h0 * 1e-3),
            (FIRST_STEP_FRACTION / np.where(big > 0, big, 1.0)) ** (1.0 / 2.0),
        )
        h = np.minimum(FIRST_STEP_GROWTH * h0, h1)
        return np.where(np.isfinite(h) & (h > 0), h, h0)

    # -- bookkeeping of positions -------------------------------------------------------------
    def _fail(self, P: np.ndarray, message: str, by_system: dict[int, str] | None = None) -> None:
        """Stop the running systems at positions P (int array) with a failure message (``{t}`` and
        ``{h}`` filled in), or the message ``by_system`` holds for a system."""
        for p in P:
            m = self.ids[p]
            if by_system is not None and m in by_system:
                self.messages[m] = by_system[m]
            else:
                self.messages[m] = message.format(t=self.t[p], h=self.h[p] if hasattr(self, "h") else 0.0)
            self.status[m] = -1
        gone = np.zeros(self.w, dtype=bool)
        gone[P] = True
        self._retire(gone)

    def _check_jacobians(self, P: np.ndarray, T: np.ndarray, Y: np.ndarray) -> None:
        """Record the positions P (int array) whose Jacobian J[:, P] is not finite; T (len(P),) and Y
        (n, len(P)) are where each was evaluated. A step size cannot repair such a Jacobian, so the
        system stops at the start of the next round (`_fail_jacobians`)."""
        bad = ~np.isfinite(self.J[:, P]).all(axis=0)
        for i in np.flatnonzero(bad):
            p, m = P[i], int(self.ids[P[i]])
            message = (
                f"the Jacobian is not finite at t = {T[i]:.17g} (entries d f_i / d y_j at (i, j) = "
                f"{nonfinite_entries(self.J[:, p], (self.n, self.n))}), y = {np.array2string(Y[:, i], precision=6)}"
            )
            if m in self.fun_nonfinite:  # evaluated where fun itself failed: that is the cause
                message = f"{self.fun_nonfinite[m]}; the Jacobian there is not finite either"
            self.jac_nonfinite[m] = message

    def _fail_jacobians(self) -> None:
        """Stop the running systems recorded by `_check_jacobians`."""
        P = self.pos_of[np.fromiter(self.jac_nonfinite, dtype=np.int64)]
        P = P[P < self.w]
        self._fail(P, "", by_system=self.jac_nonfinite)
        self.jac_nonfinite = {}

    def _retire(self, gone: np.ndarray) -> None:
        """Move the running systems flagged in ``gone`` (w,) past the running ones, keeping their state."""
        w = self.w
        perm = np.concatenate((np.flatnonzero(~gone), np.flatnonzero(gone)))
        w_new = w - int(np.count_nonzero(gone))
        vectors = [
            self.t,
            self.h,
            self.order,
            self.n_equal,
            self.eta,
            self.nsteps,
            self.nrejected,
            self.c_lu,
            self.jac_fresh,
            self.ids,
        ]
        if self.t_eval is not None:
            vectors += [self.next_eval, self.next_time]
        for a in vectors:
            a[:w] = a.take(perm)
        self.D[:, :, :w] = self.D.take(perm, axis=2)
        self.J[:, :w] = self.J.take(perm, axis=1)
        self.inv[:, :, :w] = self.inv.take(perm, axis=2)
        self.pos_of[self.ids[:w]] = np.arange(w)
        # fun keeps seeing a stopped system at its final state.
        self.Ypos[w_new:w] = self.D[0, :, w_new:w].T
        self.Tpos[w_new:w] = self.t[w_new:w]
        self.w = w_new
        if self.t_eval is not None:
            self.eval_min = self.next_time[:w_new].min(initial=np.inf)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> CoreOutput:
        with np.errstate(all="ignore"):  # overflow in a trial step is detected and handled
            while self.w > 0:
                self._round()
        M, ids = self.M, self.ids
        t_final, y_final = np.empty(M), np.empty((M, self.n))
        nsteps, nrejected = np.empty(M, dtype=np.int64), np.empty(M, dtype=np.int64)
        t_final[ids], y_final[ids] = self.t, self.D[0].T
        nsteps[ids], nrejected[ids] = self.nsteps, self.nrejected
        return CoreOutput(
            t_final=t_final,
            y_final=y_final,
            status=self.status.copy(),
            messages=[m or "reached the end of the interval" for m in self.messages],
            steps_t=self.steps_t,
            steps_y=self.steps_y,
            y_eval=self.y_eval,
            nfev=self.nfev,
            njev=self.njev,
            nlu=self.nlu,
            nsteps=nsteps,
            nrejected=nrejected,
        )

    def _set_step(self, P: np.ndarray, h_new: np.ndarray) -> None:
        """Change the step of positions P (int array) to ``h_new`` and re-express their differences.

        The closed form of `rescale_differences`, in the component-major layout.
        """
        changed = h_new != self.h[P]
        if not changed.all():
            P, h_new = P[changed], h_new[changed]
            if len(P) == 0:
                return
        rho = h_new / self.h[P]
        two = self.order[P] == 2
        D1, D2 = self.D[1][:, P], self.D[2][:, P]
        self.D[1][:, P] = rho * D1 + np.where(two, 0.5 * rho * (1.0 - rho) * D2, 0.0)
        self.D[2][:, P] = np.where(two, rho * rho * D2, D2)
        self.h[P] = h_new

    def _round(self) -> None:
        """One attempted step for each running system (positions 0..w-1).

        Everything is computed for all w positions at once and the outcomes (accepted, rejected,
        Newton failure, step and order change) are selected by masks, so that a round costs a
        fixed, small number of numpy calls on contiguous slices. The per-call overhead of numpy,
        not arithmetic, is what a round costs once few systems are left, so the common cases
        (every system converged and accepted; every system at the same order) take shorter paths
        with the same arithmetic.
        """
        if self.jac_nonfinite:
            self._fail_jacobians()
            if not self.w:
                return
        w = self.w
        t, h = self.t[:w], self.h[:w]  # views: step changes write h in place
        # Clip the step to max_step and to the end of the interval (snapping onto the end rather than
        # leaving a sliver t cannot resolve); refuse steps that t cannot resolve.
        remaining = self.t_end - t
        h_clip = np.minimum(h, self.max_step) if self.max_step < np.inf else h
        snap = h_clip >= remaining - self.end_tol
        any_snap = np.count_nonzero(snap)
        if any_snap or h_clip is not h:
            h_clip = np.where(snap, remaining, h_clip)
            changed = h_clip != h
            if np.count_nonzero(changed):
                P = np.flatnonzero(changed)
                self._set_step(P, h_clip[P])
        tiny = h < self.h_floor  # a cheap bound first: steps this large are always resolved
        if np.count_nonzero(tiny):
            tiny &= h < MIN_STEP_ULPS * np.spacing(t)
        if np.count_nonzero(tiny):
            self._fail(
                np.flatnonzero(tiny),
                "step size h = {h:.3g} fell below what floating point resolves at t = {t:.17g}; "
                "the solution may blow up or the problem be singular there",
                by_system={
                    m: f"{why}; shorter steps down to h = {self.h[self.pos_of[m]]:.3g} did not avoid it (the "
                    "solution may leave fun's domain there)"
                    for m, why in self.fun_nonfinite.items()
                },
            )
            return self._round() if self.w else None
        if self.max_steps is not None:
            over = self.nsteps[:w] >= self.max_steps
            if np.count_nonzero(over):
                message = f"reached max_steps = {self.max_steps} before the end, at t = {{t:.6g}}"
                self._fail(np.flatnonzero(over), message)
                return self._round() if self.w else None

        # Predictor y_pred = D0 + D1 (+ D2), psi = (sum_j gamma_j D_j) / gamma_k, c = h beta0.
        k = self.order[:w]
        two = k == 2
        n_two = np.count_nonzero(two)
        uniform = 2 if n_two == w else 1 if n_two == 0 else 0  # the order all share, or 0 if mixed
        D = self.D[:, :, :w]  # (N_DIFFERENCES, n, w) view
        if uniform == 2:
            y_pred = D[0] + D[1] + D[2]
            psi = (D[1] + GAMMA[2] * D[2]) / GAMMA[2]
            c = h * BETA0[2]
        elif uniform == 1:
            y_pred = D[0] + D[1]
            psi = D[1] / GAMMA[1]
            c = h * BETA0[1]
        else:
            y_pred = D[0] + D[1] + np.where(two, D[2], 0.0)
            psi = (D[1] + np.where(two, GAMMA[2] * D[2], 0.0)) / GAMMA[k]
            c = h * BETA0[k]
        t_new = t + h
        if any_snap:
            t_new[h == remaining] = self.t_end  # land exactly on the end point

        # Refactor where the Newton matrix is missing or was built for a too different h beta0
        # (c_lu is NaN where there is no usable matrix).
        fresh = np.abs(c / self.c_lu[:w] - 1.0) <= LU_REUSE_RTOL
        n_fresh = np.count_nonzero(fresh)
        if n_fresh < w:
            self._factor(~fresh, w - n_fresh, c, h, k)

        d, y_new, converged, n_iter = self._newton(w, t_new, y_pred, psi, c)

        # Newton failed: refresh the Jacobian, else the Newton matrix, else halve the step.
        n_converged = np.count_nonzero(converged)
        all_converged = n_converged == w
        shrink = None
        if not all_converged:
            shrink = self._newton_failed(np.flatnonzero(~converged), t_new, y_pred, c)
            if n_converged == 0:
                if np.count_nonzero(shrink):
                    self._rescale(np.where(shrink, h * NEWTON_FAIL_FACTOR, h), two, uniform)
                    self.n_equal[:w][shrink] = 0
                return

        # Error test (computed everywhere; meaningful where Newton converged).
        scale = self.atol_col + self.rtol * np.abs(y_new)
        err = self._norm((ERROR_CONST[uniform] if uniform else ERROR_CONST[k]) * d / scale)
        reject = err > 1.0
        if not all_converged:
            reject &= converged
        any_reject = np.count_nonzero(reject) > 0
        all_acc = all_converged and not any_reject
        acc = None if all_acc else converged & ~reject

        # Accepted steps: nabla^{k+2} = d - nabla^{k+1}_old, nabla^{k+1} = d, then the lower
        # differences accumulate (order 1 leaves D4 as it is). Written in place, row masks as the
        # ufuncs' where= (True: every row).
        on = True if all_acc else acc
        if uniform == 2:
            on2, on1 = on, None
        elif uniform == 1:
            on2, on1 = None, on
        else:
            on2, on1 = (two, ~two) if all_acc else (acc & two, acc & ~two)
        if on2 is not None:
            np.subtract(d, D[3], out=D[4], where=on2)
            np.copyto(D[3], d, where=on2)
        if on1 is not None:
            np.subtract(d, D[2], out=D[3], where=on1)
        if on2 is not None:
            np.add(D[2], d, out=D[2], where=on2)
        if on1 is not None:
            np.copyto(D[2], d, where=on1)
        np.add(D[1], D[2], out=D[1], where=on)
        np.copyto(D[0], y_new, where=on)
        np.copyto(t, t_new, where=on)
        if all_acc:
            self.nsteps[:w] += 1
            self.jac_fresh[:w] = False
            self.n_equal[:w] += 1
        else:
            self.nsteps[:w] += acc
            self.jac_fresh[:w] &= ~acc
            self.n_equal[:w] += acc
        n_equal = self.n_equal[:w]
        if self.fun_nonfinite:  # a later accepted step clears the record
            for m in list(self.fun_nonfinite):
                p = self.pos_of[m]
                if p < w and (all_acc or acc[p]):
                    del self.fun_nonfinite[m]

        if self.record_steps:
            p = self.pos_of[0]
            if p < w and (all_acc or acc[p]):
                self.steps_t.append(float(t_new[p]))
                self.steps_y.append(y_new[:, p].copy())
        t_max = np.maximum.reduce(t_new)
        if self.t_eval is not None and t_max >= self.eval_min:
            due = t_new >= self.next_time[:w]
            if not all_acc:
                due &= acc
            if np.count_nonzero(due):
                self._dense_output(np.flatnonzero(due), t_new, D, two)
        any_finished = False
        if t_max >= self.t_end:
            finished = t_new >= self.t_end
            if not all_acc:
                finished &= acc
            any_finished = np.count_nonzero(finished) > 0

        # New steps: halved after a Newton failure, shrunk after a rejection, and re-chosen (with
        # the order) once the differences span k + 1 equal steps.
        ready = n_equal >= (uniform + 1 if uniform else k + 1)
        if not all_acc:
            ready &= acc
        if any_finished:
            ready &= ~finished
        any_ready = np.count_nonzero(ready) > 0
        if not (any_ready or any_reject or shrink is not None):
            if any_finished:
                self._retire(finished)
            return
        safety = SAFETY_BY_ITERATIONS[n_iter]
        exponent = STEP_EXPONENT[uniform] if uniform else STEP_EXPONENT[k]  # -1 / (k + 1)
        h_new = h
        if any_reject:
            factor = np.maximum(MIN_FACTOR, safety * err**exponent)
            h_new = np.where(reject, h * factor, h_new)
            self.nrejected[:w] += reject
        if shrink is not None and np.count_nonzero(shrink):
            h_new = np.where(shrink, h * NEWTON_FAIL_FACTOR, h_new)
            reject = reject | shrink
            any_reject = True
        if any_ready:
            # The other order's error: order 1 seen from order 2 (error constant 1/2 on nabla^2) or
            # order 2 seen from order 1 (1/3 on nabla^3); the step factor is err^(-1/(order+1)).
            if uniform:
                other = ERROR_CONST[3 - uniform] * self._norm(D[4 - uniform] / scale)
                other_exponent = STEP_EXPONENT[3 - uniform]
            else:
                other = np.where(two, ERROR_CONST[1], ERROR_CONST[2]) * self._norm(np.where(two, D[2], D[3]) / scale)
                other_exponent = STEP_EXPONENT[3 - k]
            f_same = np.maximum(err, EPS) ** exponent
            f_other = np.maximum(other, EPS) ** other_exponent
            factor = np.minimum(MAX_FACTOR, safety * np.maximum(f_same, f_other))
            h_new = np.where(ready, h * factor, h_new)
            switch = ready & (f_other > f_same)
            if np.count_nonzero(switch):
                k[switch] = 3 - k[switch]
                two = k == 2
                n_two = np.count_nonzero(two)
                uniform = 2 if n_two == w else 1 if n_two == 0 else 0
        if any_reject:
            n_equal[ready | reject] = 0
        else:
            n_equal[ready] = 0
        self._rescale(h_new, two, uniform)
        if any_finished:
            self._retire(finished)

    def _rescale(self, h_new: np.ndarray, two: np.ndarray, uniform: int) -> None:
        """Set the steps of positions 0..w-1 to ``h_new`` (w,) and re-express the differences of
        those whose step changed (`rescale_differences` in the component-major layout). ``two`` (w,)
        flags the order-2 systems by their order for the new step, ``uniform`` the order all have
        (0 if mixed)."""
        w = self.w
        h = self.h[:w]
        changed = h_new != h
        n_changed = np.count_nonzero(changed)
        if not n_changed:
            return
        rho = h_new / h
        D1, D2 = self.D[1, :, :w], self.D[2, :, :w]
        rows = True if n_changed == w else changed  # ufunc where=: the rows to write
        if uniform != 1:
            rows2 = rows if uniform == 2 else two & changed
            coupling = 0.5 * rho * (1.0 - rho) * D2
        np.multiply(rho, D1, out=D1, where=rows)
        if uniform != 1:
            np.add(D1, coupling, out=D1, where=rows2)
            np.multiply(rho * rho, D2, out=D2, where=rows2)
        h[...] = h_new

    def _factor(self, stale: np.ndarray, n_stale: int, c: np.ndarray, h: np.ndarray, order: np.ndarray) -> None:
        """Factorise ``I - c J`` (c = h beta0) where ``stale`` (w,) is set; c, h, order (w,)."""
        self.nlu += n_stale
        if self.n <= 2 and not self.single:
            self._invert_small(True if n_stale == self.w else stale, c)
            return
        S = np.flatnonzero(stale)
        n = self.n
        A = newton_matrix(self.J[:, S].T.reshape(len(S), n, n), h[S], order[S])
        good = np.isfinite(A).all(axis=(1, 2))
        if self.single:
            if good[0]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
                    self.lu = scipy.linalg.lu_factor(A[0], check_finite=False)
                good[0] = bool(np.all(np.diag(self.lu[0]) != 0.0))
        else:
            inv = np.full_like(A, np.nan)
            try:
                inv[good] = np.linalg.inv(A[good])
            except np.linalg.LinAlgError:  # some matrix is singular: find which, one at a time
                for i in np.flatnonzero(good):
                    try:
                        inv[i] = np.linalg.inv(A[i])
                    except np.linalg.LinAlgError:
                        good[i] = False
            self.inv[:, :, S] = inv.transpose(1, 2, 0)
        self.c_lu[S] = np.where(good, c[S], np.nan)

    def _invert_small(self, rows: np.ndarray | bool, c: np.ndarray) -> None:
        """Closed-form inverses of ``I - c J`` (n = 1 or 2) for the running positions in ``rows``
        (a (w,) mask, or True for all), computed for all w at once and written where ``rows``.

        Far cheaper than LAPACK for tiny matrices. The inverse only steers Newton (the residual is
        always exact), so its rounding does not reach the solution. A matrix counts as usable when
        its entries are finite and its determinant is nonzero.
        """
        w = self.w
        J = self.J[:, :w]
        inv = self.inv.reshape(self.n * self.n, self.M)[:, :w]
        minus_c = -c
        if self.n == 1:
            det = 1.0 + minus_c * J[0]
            np.divide(1.0, det, out=inv[0], where=rows)
        else:  # [[a, b], [g, e]]^-1 = [[e, -b], [-g, a]] / det
            a, b = 1.0 + minus_c * J[0], minus_c * J[1]
            g, e = minus_c * J[2], 1.0 + minus_c * J[3]
            det = a * e - b * g
            r = 1.0 / det
            minus_r = -r
            np.multiply(e, r, out=inv[0], where=rows)
            np.multiply(b, minus_r, out=inv[1], where=rows)
            np.multiply(g, minus_r, out=inv[2], where=rows)
            np.multiply(a, r, out=inv[3], where=rows)
        good = np.isfinite(det) & (det != 0.0)  # (a non-finite entry makes det non-finite)
        np.copyto(self.c_lu[:w], np.where(good, c, np.nan), where=rows)

    def _solve(self, w: int, r: np.ndarray) -> np.ndarray:
        """Solve ``(I - c J) x = r`` for positions 0..w-1: r (n, w) -> x (n, w)."""
        if self.single:
            return scipy.linalg.lu_solve(self.lu, r[:, 0], check_finite=False)[:, None]
        return np.einsum("ijw,jw->iw", self.inv[:, :, :w], r)

    def _newton_failed(self, F: np.ndarray, t_new: np.ndarray, y_pred: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Newton failed at positions F: refresh the Jacobian, else the Newton matrix, else halve the
        step. Returns the (w,) mask of positions whose step is to be halved."""
        self.nrejected[F] += 1
        stale_jac = ~self.jac_fresh[F]
        need_jac = F[stale_jac]
        if len(need_jac):
            T, Y = self.t.copy(), self.D[0].T.copy()
            T[need_jac] = t_new[need_jac]
            Y[need_jac] = y_pred[:, need_jac].T
            J = self.jac(T.take(self.pos_of), Y.take(self.pos_of, axis=0))
            self.J[:, need_jac] = J.take(self.ids[need_jac], axis=0).reshape(len(need_jac), -1).T
            self.jac_fresh[need_jac] = True
            self._check_jacobians(need_jac, t_new[need_jac], y_pred[:, need_jac])
            self.c_lu[need_jac] = np.nan  # its Newton matrix is rebuilt next round
        c_lu = self.c_lu[F]
        matrix_mismatch = self.jac_fresh[F] & (c_lu != c[F]) & (c_lu == c_lu)
        self.c_lu[F[matrix_mismatch]] = np.nan
        shrink = np.zeros(self.w, dtype=bool)
        shrink[F[~(stale_jac | matrix_mismatch)]] = True
        return shrink

    def _newton(self, w, t_new, y_pred, psi, c):
        """Solve R(d) = d - c f(t_new, y_pred + d) + psi = 0 at positions 0..w-1 by simplified Newton.

        Arrays are component-major: y_pred, psi (n, w); t_new, c (w,). Returns d (n, w),
        y = y_pred + d (n, w), converged (w,) and iterations used (w,).
        """
        scale = self.atol_col + self.rtol * np.abs(y_pred)
        eta = np.maximum(self.eta[:w], EPS) ** ETA_EXPONENT
        iterating = self.c_lu[:w] == self.c_lu[:w]  # a usable Newton matrix (else: a failure)
        self.Tpos[:w] = t_new
        full = w == self.M
        T = self.Tpos.copy() if full else self.Tpos.take(self.pos_of)
        ids, pos_of, Ypos, fun, solve, norm = self.ids[:w], self.pos_of, self.Ypos, self.fun, self._solve, self._norm
        tol = self.newton_tol
        y, dy_norm_old = y_pred, None
        for it in range(NEWTON_MAXITER):
            Ypos[:w] = y.T
            if full:
                F = fun(T, Ypos.copy()).T
            else:
                F = fun(T, Ypos.take(pos_of, axis=0)).take(ids, axis=0).T
            # A non-finite f gives a non-finite dy (the matrix is nonsingular), which stops the row:
            # through the isfinite test on the first iteration, as a rate that is not < 1 after.
            if it == 0:
                if not np.count_nonzero(iterating):
                    d, converged, n_iter = np.zeros_like(y_pred), iterating, np.zeros(w, dtype=np.int64)
                    break
                dy = solve(w, c * F - psi)
                dy_norm = norm(dy / scale)
                finite = np.isfinite(dy_norm)
                if np.count_nonzero(finite) < w:
                    self._note_nonfinite_fun(iterating & ~finite, t_new, y, F)
                iterating &= finite
                d = np.where(iterating, dy, 0.0)
                y = y_pred + d
                n_iter = iterating.astype(np.int64)
            else:
                dy = solve(w, c * F - psi - d)
                dy_norm = norm(dy / scale)
                finite = np.isfinite(dy_norm)
                if np.count_nonzero(finite) < w:
                    self._note_nonfinite_fun(iterating & ~finite, t_new, y, F)
                rate = dy_norm / dy_norm_old
                one_minus = 1.0 - rate
                iterating &= (rate < 1.0) & (rate ** (NEWTON_MAXITER - it) / one_minus * dy_norm <= tol)
                eta = np.where(iterating, rate / one_minus, eta)
                np.add(y, dy, out=y, where=iterating)
                np.add(d, dy, out=d, where=iterating)
                n_iter += iterating
            # (eta is finite on iterating rows, so dy_norm == 0 passes this test too.)
            done = iterating & (eta * dy_norm < tol)
            if it == 0:
                converged = done
            else:
                converged |= done
            iterating ^= done  # done only where iterating
            dy_norm_old = dy_norm
            if not np.count_nonzero(iterating):
                break
        self.eta[:w] = np.where(converged, eta, self.eta[:w])
        return d, y, converged, n_iter

    def _note_nonfinite_fun(self, bad: np.ndarray, t_new: np.ndarray, y: np.ndarray, F: np.ndarray) -> None:
        """Record, for the positions flagged in ``bad`` (w,) whose f = F (n, w) at (t_new, y) is not
        finite, why their attempt failed (named if their step then collapses)."""
        for p in np.flatnonzero(bad & ~np.isfinite(F).all(axis=0)):
            self.fun_nonfinite[int(self.ids[p])] = (
                f"fun returned NaN or Inf at t = {t_new[p]:.17g} (components {nonfinite_entries(F[:, p], (self.n,))}) "
                f"for y = {np.array2string(y[:, p], precision=6)}"
            )

    def _dense_output(self, P: np.ndarray, t_new: np.ndarray, D: np.ndarray, two: np.ndarray) -> None:
        """Fill t_eval points in (t_old, t_new] at positions P (int array) from the step's
        interpolating polynomial. t_new (w,), D (N_DIFFERENCES, n, w) (after the step) and two (w,)
        cover all running positions; h is still the step just taken."""
        t_new, D, two = t_new[P], D[:, :, P], two[P]
        hi = np.searchsorted(self.t_eval, t_new, side="right")
        lo = self.next_eval[P]
        h = self.h[P]
        for j in range(int(np.max(hi - lo, initial=0))):
            sel = lo + j < hi
            idx = lo[sel] + j
            s = (self.t_eval[idx] - t_new[sel]) / h[sel]
            Ds = D[:, :, sel]
            val = Ds[0] + s * Ds[1] + np.where(two[sel], 0.5 * s * (s + 1.0) * Ds[2], 0.0)
            self.y_eval[self.ids[P[sel]], :, idx] = val.T
        nxt = np.maximum(hi, lo)
        self.next_eval[P] = nxt
        T = len(self.t_eval)
        self.next_time[P] = np.where(nxt < T, self.t_eval[np.minimum(nxt, T - 1)], np.inf)
        self.eval_min = self.next_time[: self.w].min()
