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
the order moves between 1 and 2 to whichever allows the larger step. What the tolerances mean is in
`depthscope.dynamics._error_control`.

Every system of a batch has its own t, h, order, Jacobian and Newton matrix; the systems advance
in lockstep rounds (one attempted step each per round, `BatchOdeSolver.step`) so that one call of
``fun`` on the whole batch serves them all. The slowest system sets the number of rounds, so a round
is built to cost little once few systems are left: finished systems drop out of the arrays a round
touches, all outcomes are handled by masks rather than gathers, and the common cases (every system
at one order, every step accepted) take shorter paths with the same arithmetic (`_Orders`).
Everything here is float64 numpy.
"""

from __future__ import annotations

import numpy as np

from depthscope.dynamics._error_control import (
    MAX_FACTOR,
    MIN_FACTOR,
    NEWTON_FAIL_FACTOR,
    SAFETY_BY_ITERATIONS,
    initial_step,
    local_tolerance_factor,
    rms_norm_columns,
    rms_norm_columns_exact,
)
from depthscope.dynamics._newton import ImplicitBatchSolver, iteration_matrix
from depthscope.dynamics._ode_base import EPS, BatchFun, BatchJac, BatchOdeSolver

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
# -1 / (k + 1): the exponent turning an order-k error estimate into a step-size factor.
STEP_EXPONENT = np.array([np.nan, -1.0 / 2.0, -1.0 / 3.0])


def newton_matrix(J: np.ndarray, h: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The Newton matrix ``I - h beta0 J`` of the order-k BDF (claim J7).

    Args:
        J: (w, n, n) Jacobians; h: (w,) steps; order: (w,) BDF orders (1 or 2).
    Returns:
        (w, n, n).
    """
    return iteration_matrix(J, np.asarray(h, dtype=np.float64) * BETA0[np.asarray(order)])


def rescale_differences(
    D: np.ndarray, rho: np.ndarray, rows: np.ndarray | bool, rows2: np.ndarray | bool | None
) -> None:
    """Re-express backward differences for a step changed by ``rho`` (in place).

    The interpolant through the last points is ``p(s) = D0 + s D1 + s (s + 1) / 2 D2`` (s in units
    of the old step). Its differences on the grid of spacing ``rho`` are
    ``D1' = rho D1 + rho (1 - rho) / 2 D2`` and ``D2' = rho^2 D2``. Order-1 systems have no D2 term
    and keep their D2 row untouched (it is rewritten before it is next read).

    Args:
        D: (N_DIFFERENCES, n, w) differences of w systems, component-major (the solver's layout).
        rho: (w,) new step / old step.
        rows: the systems to rescale, a (w,) mask or True for all (a ufunc ``where=``).
        rows2: those of them at order 2 (mask or True), or None when none is.
    """
    D1, D2 = D[1], D[2]
    if rows2 is not None:
        coupling = 0.5 * rho * (1.0 - rho) * D2
    np.multiply(rho, D1, out=D1, where=rows)
    if rows2 is not None:
        np.add(D1, coupling, out=D1, where=rows2)
        np.multiply(rho * rho, D2, out=D2, where=rows2)


class _Orders:
    """The orders of the running systems, with the order all share (``uniform``: 1 or 2, 0 if mixed)
    so that a round whose systems share one order uses scalars instead of per-system arrays."""

    __slots__ = ("k", "two", "uniform", "beta0", "error_const")

    def __init__(self, k: np.ndarray):
        self.k = k  # (w,) a view of the solver's orders
        self.two = k == 2
        n_two = np.count_nonzero(self.two)
        self.uniform = 2 if n_two == len(k) else 1 if n_two == 0 else 0
        # The constants every step reads (a scalar when all share one order, else (w,)).
        if self.uniform:
            self.beta0, self.error_const = BETA0[self.uniform], ERROR_CONST[self.uniform]
        else:
            self.beta0, self.error_const = BETA0[k], ERROR_CONST[k]

    def pick(self, table: np.ndarray) -> np.ndarray:
        """``table[k]`` per system: a scalar when all share one order, else (w,)."""
        return table[self.uniform] if self.uniform else table[self.k]

    def masks(self, on: np.ndarray | bool) -> tuple[np.ndarray | bool | None, np.ndarray | bool | None]:
        """The order-2 and order-1 parts of the rows ``on`` ((w,) mask or True), None where empty."""
        if self.uniform == 2:
            return on, None
        if self.uniform == 1:
            return None, on
        return (self.two, ~self.two) if on is True else (on & self.two, on & ~self.two)


class _Attempt:
    """One round's attempted steps at positions 0..w-1 and what became of them."""

    __slots__ = (
        "h",
        "D",
        "orders",
        "t_new",
        "d",
        "y_new",
        "scale",
        "err",
        "reject",
        "any_reject",
        "acc",
        "shrink",
        "n_iter",
    )

    def __init__(self, h: np.ndarray, D: np.ndarray, orders: _Orders, t_new: np.ndarray):
        self.h, self.D = h, D  # (w,) steps and (N_DIFFERENCES, n, w) differences: views, written in place
        self.orders = orders
        self.t_new = t_new  # (w,) where each step ends
        self.shrink = None  # (w,) Newton failures whose step is halved, or None


class BDF2Solver(ImplicitBatchSolver):
    """Advance M independent systems ``y' = f(t, y)`` from t0 to t_end with variable-step BDF-2.

    Args:
        fun, jac, t0, t_end, y0, max_step, t_eval, record_steps, max_steps: as `BatchOdeSolver`.
        rtol: relative tolerance (scalar); atol: (n,) absolute tolerances. The global error is
            held near them: each step's test uses them times `local_tolerance_factor` (rtol).
        first_step: (M,) initial steps or None (chosen from f and its change).

    State by position (besides the base's): ``D`` (N_DIFFERENCES, n, M) the backward differences,
    ``order`` (M,) and ``n_equal`` (M,) the steps taken since the step or order last changed (the
    differences must span k + 1 equal steps before either changes again).
    """

    def __init__(
        self,
        fun: BatchFun,
        jac: BatchJac,
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
        BatchOdeSolver.__init__(self, fun, jac, t0, t_end, y0, max_step, t_eval, record_steps, max_steps)
        M, n = self.M, self.n
        # The per-step tolerances (see `local_tolerance_factor`); every test below uses these. Norm over
        # components: one system keeps the summation order of `rms_norm`.
        factor = local_tolerance_factor(float(rtol))
        norm = rms_norm_columns_exact if self.single else rms_norm_columns
        self._init_newton(factor * float(rtol), factor * np.asarray(atol, dtype=np.float64), norm)
        self.D = np.zeros((N_DIFFERENCES, n, M))
        self.D[0] = y0.T
        self.order = np.ones(M, dtype=np.int64)
        self.n_equal = np.zeros(M, dtype=np.int64)

        f0 = self.fun(self.t, y0)
        if first_step is None:
            self.h = initial_step(self.fun, self.t, self.t_end, y0, f0, self.rtol, self.atol)
        else:
            self.h = first_step.astype(float)
        self.h = np.minimum(self.h, min(self.max_step, self.t_end - t0))
        self.D[1] = (self.h[:, None] * np.where(np.isfinite(f0), f0, 0.0)).T
        self._start_jacobians(y0)
        self._start_checks(f0)

    # -- the contract's hooks ------------------------------------------------------------------
    def _state(self) -> np.ndarray:
        return self.D[0]

    def _by_position(self) -> list[np.ndarray]:
        return super()._by_position() + [self.order, self.n_equal, self.D]

    def _change_steps(self, h_new: np.ndarray) -> None:
        self._rescale(h_new, _Orders(self.order[: self.w]))

    def _step_impl(self) -> None:
        """One attempted step for each running system (positions 0..w-1).

        Everything is computed for all w positions at once and the outcomes (accepted, rejected,
        Newton failure, step and order change) are selected by masks, so that a round costs a
        fixed, small number of numpy calls on contiguous slices.
        """
        w = self.w
        t, h = self.t[:w], self.h[:w]
        a = _Attempt(h, self.D[:, :, :w], _Orders(self.order[:w]), self._step_ends(t, h))
        y_pred, psi, c = self._predict(a)
        self._refresh_newton_matrices(c)
        a.d, a.y_new, converged, a.n_iter = self._newton(w, a.t_new, y_pred, psi, c)
        n_converged = np.count_nonzero(converged)
        all_converged = n_converged == w
        if not all_converged:
            # Newton failed: refresh the Jacobian, else the Newton matrix, else halve the step.
            a.shrink = self._newton_failed(np.flatnonzero(~converged), a.t_new, y_pred, c)
            if n_converged == 0:
                if np.count_nonzero(a.shrink):
                    self._rescale(np.where(a.shrink, h * NEWTON_FAIL_FACTOR, h), a.orders)
                    self.n_equal[:w][a.shrink] = 0
                return
        self._error_test(a, None if all_converged else converged)
        self._accept(a)
        if self.record_steps or self.fun_nonfinite:
            self._record_accepted(a.acc, a.t_new, a.y_new)
        t_max = np.maximum.reduce(a.t_new)
        if self.t_eval is not None and t_max >= self.eval_min:
            due = a.t_new >= self.next_time[:w]
            if a.acc is not None:
                due &= a.acc
            if np.count_nonzero(due):
                self._dense_output(np.flatnonzero(due), a.t_new, a.D, a.orders.two)
        finished = None if t_max < self.t_end else self._finished(a.acc, a.t_new)
        self._next_steps(a, finished)
        if finished is not None:
            self._retire(finished)

    # -- the stages of a step ------------------------------------------------------------------
    def _predict(self, a: _Attempt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The predictor y_pred = D0 + D1 (+ D2), psi = (sum_j gamma_j D_j) / gamma_k and c = h beta0:
        (n, w), (n, w), (w,)."""
        D, orders = a.D, a.orders
        if orders.uniform == 2:
            y_pred = D[0] + D[1] + D[2]
            psi = (D[1] + GAMMA[2] * D[2]) / GAMMA[2]
        elif orders.uniform == 1:
            y_pred = D[0] + D[1]
            psi = D[1] / GAMMA[1]
        else:
            two = orders.two
            y_pred = D[0] + D[1] + np.where(two, D[2], 0.0)
            psi = (D[1] + np.where(two, GAMMA[2] * D[2], 0.0)) / GAMMA[orders.k]
        return y_pred, psi, a.h * orders.beta0

    def _error_test(self, a: _Attempt, converged: np.ndarray | None) -> None:
        """The error estimate of each step and its verdict (meaningful where Newton converged;
        ``converged`` (w,) or None when all did): sets a.scale, a.err, a.reject, a.acc (None when
        every step is accepted)."""
        a.scale = self.atol_col + self.rtol * np.abs(a.y_new)
        a.err = self._norm(a.orders.error_const * a.d / a.scale)
        a.reject = a.err > 1.0
        if converged is not None:
            a.reject &= converged
        a.any_reject = np.count_nonzero(a.reject) > 0
        if converged is None:
            a.acc = ~a.reject if a.any_reject else None
        else:
            a.acc = converged & ~a.reject

    def _accept(self, a: _Attempt) -> None:
        """Write the accepted steps: nabla^{k+2} = d - nabla^{k+1}_old, nabla^{k+1} = d, then the
        lower differences accumulate (order 1 leaves D4 as it is); t and the counters follow.
        In place, row masks as the ufuncs' where= (True: every row)."""
        w = self.w
        D, d = a.D, a.d
        on = True if a.acc is None else a.acc
        on2, on1 = a.orders.masks(on)
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
        np.copyto(D[0], a.y_new, where=on)
        np.copyto(self.t[:w], a.t_new, where=on)
        if a.acc is None:
            self.nsteps[:w] += 1
            self.jac_fresh[:w] = False
            self.n_equal[:w] += 1
        else:
            self.nsteps[:w] += a.acc
            self.jac_fresh[:w] &= ~a.acc
            self.n_equal[:w] += a.acc

    def _next_steps(self, a: _Attempt, finished: np.ndarray | None) -> None:
        """New steps: halved after a Newton failure, shrunk after a rejection, and re-chosen (with
        the order) once the differences span k + 1 equal steps."""
        w = self.w
        h, n_equal, orders = a.h, self.n_equal[:w], a.orders
        ready = n_equal >= (orders.uniform + 1 if orders.uniform else orders.k + 1)
        if a.acc is not None:
            ready &= a.acc
        if finished is not None:
            ready &= ~finished
        any_ready = np.count_nonzero(ready) > 0
        if not (any_ready or a.any_reject or a.shrink is not None):
            return
        safety = SAFETY_BY_ITERATIONS[a.n_iter]
        exponent = orders.pick(STEP_EXPONENT)  # -1 / (k + 1)
        h_new, reject, any_reject = h, a.reject, a.any_reject
        if any_reject:
            factor = np.maximum(MIN_FACTOR, safety * a.err**exponent)
            h_new = np.where(reject, h * factor, h_new)
            self.nrejected[:w] += reject
        if a.shrink is not None and np.count_nonzero(a.shrink):
            h_new = np.where(a.shrink, h * NEWTON_FAIL_FACTOR, h_new)
            reject = reject | a.shrink
            any_reject = True
        if any_ready:
            h_new, orders = self._choose_step_and_order(a, ready, safety, exponent, h_new)
        if any_reject:
            n_equal[ready | reject] = 0
        else:
            n_equal[ready] = 0
        self._rescale(h_new, orders)

    def _choose_step_and_order(
        self, a: _Attempt, ready: np.ndarray, safety: np.ndarray, exponent: np.ndarray, h_new: np.ndarray
    ) -> tuple[np.ndarray, _Orders]:
        """For the ``ready`` positions (w,): the step of the order (1 or 2) that allows the larger one,
        and that order. Returns the new steps (w,) and the orders (new if any changed)."""
        h, D, orders = a.h, a.D, a.orders
        # The other order's error: order 1 seen from order 2 (error constant 1/2 on nabla^2) or
        # order 2 seen from order 1 (1/3 on nabla^3); the step factor is err^(-1/(order+1)).
        if orders.uniform:
            other = ERROR_CONST[3 - orders.uniform] * self._norm(D[4 - orders.uniform] / a.scale)
            other_exponent = STEP_EXPONENT[3 - orders.uniform]
        else:
            two = orders.two
            other = np.where(two, ERROR_CONST[1], ERROR_CONST[2]) * self._norm(np.where(two, D[2], D[3]) / a.scale)
            other_exponent = STEP_EXPONENT[3 - orders.k]
        f_same = np.maximum(a.err, EPS) ** exponent
        f_other = np.maximum(other, EPS) ** other_exponent
        factor = np.minimum(MAX_FACTOR, safety * np.maximum(f_same, f_other))
        h_new = np.where(ready, h * factor, h_new)
        switch = ready & (f_other > f_same)
        if np.count_nonzero(switch):
            k = orders.k
            k[switch] = 3 - k[switch]
            orders = _Orders(k)
        return h_new, orders

    def _rescale(self, h_new: np.ndarray, orders: _Orders) -> None:
        """Set the steps of positions 0..w-1 to ``h_new`` (w,) and re-express the differences of
        those whose step changed (`rescale_differences`); ``orders`` are the orders for the new step."""
        w = self.w
        h = self.h[:w]
        changed = h_new != h
        n_changed = np.count_nonzero(changed)
        if not n_changed:
            return
        rows = True if n_changed == w else changed  # ufunc where=: the rows to write
        rows2 = None if orders.uniform == 1 else rows if orders.uniform == 2 else orders.two & changed
        rescale_differences(self.D[:, :, :w], h_new / h, rows, rows2)
        h[...] = h_new

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
