"""Variable-step BDF of orders 1 and 2 ("BDF-2") for one or many independent stiff systems.

The state of each system is kept as backward differences of the solution taken with its current
step h (the quasi-constant-step form of Shampine & Reichelt, *The MATLAB ODE suite*, 1997):
``D[0] = y_n, D[1] = nabla y_n, D[2] = nabla^2 y_n``. With ``gamma_k = sum_{j<=k} 1/j`` the BDF of
order k reads ``sum_{j<=k} (1/j) nabla^j y_{n+1} = h f(t_{n+1}, y_{n+1})``; writing
``y_{n+1} = y_pred + d`` with the predictor ``y_pred = sum_{j<=k} D[j]`` it becomes

    R(d) = d - h beta0 f(t_{n+1}, y_pred + d) + psi = 0,   beta0 = 1 / gamma_k,
    psi = (sum_{j=1..k} gamma_j D[j]) / gamma_k,

whose Newton matrix is ``I - h beta0 J`` (claim J7; beta0 = 2/3 at order 2). ``d`` is also the
(k+1)-th backward difference of the new solution, so ``ERROR_CONST[k] * d`` estimates the local
error. A change of step h -> rho h re-expresses the differences on the new grid (closed form in
`rescale_differences`). Order 1 (backward Euler) starts the integration; afterwards the order moves
between 1 and 2 to whichever allows the larger step.

Every system of a batch has its own t, h, order, Jacobian and Newton matrix; the systems advance
in lockstep rounds (one attempted step each per round) so that one call of ``fun`` on the whole
batch serves them all. Everything here is float64 numpy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

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
# Local error of order k = ERROR_CONST[k] * nabla^{k+1} y: the truncation term 1/(k+1) of
# h D = -log(1 - nabla) divided by gamma_k (backward Euler 1/2, BDF-2 2/9).
ERROR_CONST = np.array([0.0, 1.0 / 2.0, 2.0 / 9.0])
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
# Step-size bounds per decision: never shrink below 1/5 or grow above 10x at once.
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
# Step-size factor after a Newton failure with a fresh Jacobian and matching Newton matrix.
NEWTON_FAIL_FACTOR = 0.5
# Base safety factor of the step controller (scaled down further when Newton needed many iterations).
SAFETY = 0.9
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

BatchFun = Callable[[np.ndarray, np.ndarray], np.ndarray]


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


class NewtonMatrices:
    """Factorised Newton matrices ``I - c_m J_m`` of M systems.

    One system is factorised by LU (scipy.linalg.lu_factor); a batch keeps explicit inverses from
    one batched LAPACK call, so that each Newton solve is one batched matrix-vector product.
    """

    def __init__(self, n_systems: int, n: int):
        self.single = n_systems == 1
        self.inv = np.zeros((n_systems, n, n))
        self.lu: tuple[np.ndarray, np.ndarray] | None = None
        self.c = np.full(n_systems, np.nan)
        self.ok = np.zeros(n_systems, dtype=bool)
        self.count = 0

    def factor(self, rows: np.ndarray, h: np.ndarray, order: np.ndarray, J: np.ndarray) -> np.ndarray:
        """Factorise ``I - h beta0 J`` for ``rows`` (w,) with h, order (w,), J (w, n, n).

        Returns (w,) True where the matrix was finite and nonsingular.
        """
        A = newton_matrix(J, h, order)
        c = h * BETA0[order]
        self.count += len(rows)
        self.c[rows] = c
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
            self.inv[rows] = inv
        self.ok[rows] = good
        return good

    def solve(self, rows: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Solve ``(I - c J) x = r`` for ``rows`` (w,), r (w, n) -> x (w, n)."""
        if self.single:
            return scipy.linalg.lu_solve(self.lu, r[0], check_finite=False)[None, :]
        return np.matmul(self.inv[rows], r[:, :, None])[:, :, 0]


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
        rtol: relative tolerance (scalar); atol: (n,) absolute tolerances.
        first_step: (M,) initial steps or None (chosen from f and its change).
        max_step: upper bound on every step.
        t_eval: (T,) sorted times in [t0, t_end] for dense output, or None.
        record_steps: keep every accepted (t, y) of system 0 (the unbatched front end).
        max_steps: accepted steps per system before giving up, or None.
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
        self.rtol, self.atol = float(rtol), atol
        self.max_step = float(max_step)
        self.max_steps = max_steps
        self.newton_tol = max(10.0 * EPS / self.rtol, NEWTON_TOL)
        self.nfev = self.njev = 0

        self.t = np.full(M, float(t0))
        self.D = np.zeros((M, N_DIFFERENCES, n))
        self.D[:, 0] = y0
        self.order = np.ones(M, dtype=np.int64)
        self.n_equal = np.zeros(M, dtype=np.int64)
        self.eta = np.ones(M)  # last Newton contraction estimate rate / (1 - rate)
        self.active = np.ones(M, dtype=bool)
        self.status = np.zeros(M, dtype=np.int64)
        self.messages = ["" for _ in range(M)]
        self.nsteps = np.zeros(M, dtype=np.int64)
        self.nrejected = np.zeros(M, dtype=np.int64)
        self.newton = NewtonMatrices(M, n)

        f0 = self.fun(self.t, y0)
        self._fail(~np.isfinite(f0).all(axis=1), "fun(t0, y0) is not finite")
        self.h = self._initial_step(y0, f0) if first_step is None else first_step.astype(float)
        self.h = np.minimum(self.h, min(self.max_step, self.t_end - t0))
        self.D[:, 1] = self.h[:, None] * np.where(np.isfinite(f0), f0, 0.0)
        self.J = self.jac(self.t, y0)
        self.jac_fresh = np.ones(M, dtype=bool)

        self.record_steps = record_steps
        self.steps_t: list[float] = [float(t0)]
        self.steps_y: list[np.ndarray] = [y0[0].copy()]
        self.t_eval = t_eval
        self.y_eval = None
        if t_eval is not None:
            self.y_eval = np.full((M, n, len(t_eval)), np.nan)
            self.next_eval = np.full(M, int(np.searchsorted(t_eval, t0, side="right")))
            self.y_eval[:, :, : self.next_eval[0]] = y0[:, :, None]

    # -- evaluations ------------------------------------------------------------------------
    def fun(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        self.nfev += 1
        return self.fun_raw(t, Y)

    def jac(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        self.njev += 1
        return self.jac_raw(t, Y)

    def _fail(self, rows: np.ndarray, message: str) -> None:
        """Mark systems (boolean mask (M,)) as failed with a message."""
        for m in np.flatnonzero(rows & self.active):
            self.messages[m] = message.format(t=self.t[m], h=self.h[m] if hasattr(self, "h") else 0.0)
            self.status[m] = -1
        self.active &= ~rows

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

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> CoreOutput:
        with np.errstate(all="ignore"):  # overflow in a trial step is detected and handled
            while self.active.any():
                self._round(np.flatnonzero(self.active))
        return CoreOutput(
            t_final=self.t.copy(),
            y_final=self.D[:, 0].copy(),
            status=self.status.copy(),
            messages=[m or "reached the end of the interval" for m in self.messages],
            steps_t=self.steps_t,
            steps_y=self.steps_y,
            y_eval=self.y_eval,
            nfev=self.nfev,
            njev=self.njev,
            nlu=self.newton.count,
            nsteps=self.nsteps.copy(),
            nrejected=self.nrejected.copy(),
        )

    def _set_step(self, rows: np.ndarray, h_new: np.ndarray) -> None:
        """Change the step of ``rows`` to ``h_new`` and re-express their differences."""
        changed = h_new != self.h[rows]
        if not changed.any():
            return
        rows, h_new = rows[changed], h_new[changed]
        D = self.D[rows]
        rescale_differences(D, h_new / self.h[rows], self.order[rows])
        self.D[rows] = D
        self.h[rows] = h_new

    def _round(self, W: np.ndarray) -> None:
        """One attempted step for each system in W (indices of active systems)."""
        # Clip the step to max_step and to the end of the interval (snapping onto the end rather than
        # leaving a sliver t cannot resolve); refuse steps that t cannot resolve.
        remaining = self.t_end - self.t[W]
        h = np.minimum(self.h[W], self.max_step)
        h = np.where(h >= remaining - MIN_STEP_ULPS * np.spacing(self.t_end), remaining, h)
        self._set_step(W, h)
        min_step = MIN_STEP_ULPS * np.spacing(self.t[W])
        tiny = np.zeros(self.M, dtype=bool)
        tiny[W] = self.h[W] < min_step
        if tiny.any():
            self._fail(
                tiny,
                "step size h = {h:.3g} fell below what floating point resolves at t = {t:.17g}; "
                "the solution may blow up or the problem be singular there",
            )
            W = np.flatnonzero(self.active)
            if len(W) == 0:
                return
        if self.max_steps is not None:
            over = np.zeros(self.M, dtype=bool)
            over[W] = self.nsteps[W] >= self.max_steps
            if over.any():
                self._fail(over, f"reached max_steps = {self.max_steps} before the end, at t = {{t:.6g}}")
                W = np.flatnonzero(self.active)
                if len(W) == 0:
                    return

        k, h = self.order[W], self.h[W]
        remaining = self.t_end - self.t[W]
        two = (k == 2)[:, None]
        D = self.D[W]
        y_pred = D[:, 0] + D[:, 1] + np.where(two, D[:, 2], 0.0)
        psi = (D[:, 1] + np.where(two, GAMMA[2] * D[:, 2], 0.0)) / GAMMA[k][:, None]
        c = h * BETA0[k]
        t_new = self.t[W] + h
        t_new[h == remaining] = self.t_end  # land exactly on the end point

        stale = ~self.newton.ok[W] | (np.abs(c / self.newton.c[W] - 1.0) > LU_REUSE_RTOL)
        if stale.any():
            self.newton.factor(W[stale], h[stale], k[stale], self.J[W[stale]])

        d, y_new, converged, n_iter = self._newton(W, t_new, y_pred, psi, c)

        # Newton failed: refresh the Jacobian, else the Newton matrix, else halve the step.
        failed = ~converged
        if failed.any():
            F = W[failed]
            self.nrejected[F] += 1
            need_jac = F[~self.jac_fresh[F]]
            if len(need_jac):
                T, Y = self.t.copy(), self.D[:, 0].copy()
                T[need_jac] = t_new[failed][~self.jac_fresh[F]]
                Y[need_jac] = y_pred[failed][~self.jac_fresh[F]]
                J = self.jac(T, Y)
                self.J[need_jac] = J[need_jac]
                self.jac_fresh[need_jac] = True
                self.newton.ok[need_jac] = False
            matrix_mismatch = self.jac_fresh[F] & (self.newton.c[F] != c[failed]) & self.newton.ok[F]
            self.newton.ok[F[matrix_mismatch]] = False
            already = np.isin(F, need_jac) | matrix_mismatch
            shrink = F[~already]
            if len(shrink):
                self._set_step(shrink, self.h[shrink] * NEWTON_FAIL_FACTOR)
                self.n_equal[shrink] = 0

        ok = converged
        if not ok.any():
            return
        A = W[ok]
        kA, dA, yA = k[ok], d[ok], y_new[ok]
        scale = self.atol + self.rtol * np.abs(yA)
        err = rms_norm(ERROR_CONST[kA][:, None] * dA / scale)
        safety = SAFETY * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + n_iter[ok])

        reject = err > 1.0
        if reject.any():
            R = A[reject]
            self.nrejected[R] += 1
            factor = np.maximum(MIN_FACTOR, safety[reject] * err[reject] ** (-1.0 / (kA[reject] + 1)))
            self._set_step(R, self.h[R] * factor)
            self.n_equal[R] = 0

        acc = ~reject
        if acc.any():
            self._accept(A[acc], kA[acc], dA[acc], yA[acc], t_new[ok][acc], safety[acc], err[acc])

    def _newton(self, W, t_new, y_pred, psi, c):
        """Solve R(d) = d - c f(t_new, y_pred + d) + psi = 0 for systems W by simplified Newton.

        Returns d (w, n), y = y_pred + d (w, n), converged (w,) and iterations used (w,).
        """
        w = len(W)
        scale = self.atol + self.rtol * np.abs(y_pred)
        d = np.zeros_like(y_pred)
        y = y_pred.copy()
        eta = np.maximum(self.eta[W], EPS) ** ETA_EXPONENT
        converged = np.zeros(w, dtype=bool)
        iterating = self.newton.ok[W].copy()  # a singular Newton matrix counts as a failure
        n_iter = np.zeros(w, dtype=np.int64)
        dy_norm_old = np.full(w, np.nan)
        T, Y = self.t.copy(), self.D[:, 0].copy()
        T[W] = t_new
        tol = self.newton_tol
        for it in range(NEWTON_MAXITER):
            Y[W] = y
            F = self.fun(T, Y)[W]
            iterating &= np.isfinite(F).all(axis=1)
            if not iterating.any():
                break
            dy = self.newton.solve(W, c[:, None] * F - psi - d)
            dy_norm = rms_norm(dy / scale)
            if it > 0:
                rate = dy_norm / dy_norm_old
                diverging = (rate >= 1.0) | (rate ** (NEWTON_MAXITER - it) / (1.0 - rate) * dy_norm > tol)
                iterating &= ~diverging
                eta = np.where(iterating, rate / (1.0 - rate), eta)
            iterating &= np.isfinite(dy_norm)
            dy = np.where(iterating[:, None], dy, 0.0)
            y += dy
            d += dy
            n_iter += iterating
            done = iterating & ((dy_norm == 0.0) | (eta * dy_norm < tol))
            converged |= done
            iterating &= ~done
            dy_norm_old = dy_norm
            if not iterating.any():
                break
        self.eta[W[converged]] = eta[converged]
        return d, y, converged, n_iter

    def _accept(self, A, k, d, y, t_new, safety, err) -> None:
        """Bookkeeping of accepted steps for systems A: differences, output, next step and order."""
        t_old = self.t[A]
        self.t[A] = t_new
        self.nsteps[A] += 1
        self.jac_fresh[A] = False
        D = self.D[A]
        two = k == 2
        t2 = two[:, None]
        # nabla^{k+2} = d - nabla^{k+1}_old, nabla^{k+1} = d, then the lower differences accumulate.
        D2, D3 = D[:, 2].copy(), D[:, 3].copy()
        D[:, 4] = np.where(t2, d - D3, D[:, 4])
        D[:, 3] = np.where(t2, d, d - D2)
        D[:, 2] = np.where(t2, D2 + d, d)
        D[:, 1] += D[:, 2]
        D[:, 0] = y
        self.D[A] = D
        self.n_equal[A] += 1

        if self.record_steps and A[0] == 0:
            self.steps_t.append(float(t_new[0]))
            self.steps_y.append(y[0].copy())
        if self.t_eval is not None:
            self._dense_output(A, t_old, t_new, D, two)

        finished = t_new >= self.t_end
        if finished.any():
            self.active[A[finished]] = False

        # Order and step choice once the differences span k + 1 equal steps.
        ready = (self.n_equal[A] >= k + 1) & ~finished
        if not ready.any():
            return
        R, kR, DR, errR = A[ready], k[ready], D[ready], err[ready]
        scale = self.atol + self.rtol * np.abs(y[ready])
        twoR = kR == 2
        # The other order's error: order 1 seen from order 2 (error constant 1/2 on nabla^2) or
        # order 2 seen from order 1 (2/9 on nabla^3); the step factor is err^(-1/(order+1)).
        other = np.where(twoR, ERROR_CONST[1] * rms_norm(DR[:, 2] / scale), ERROR_CONST[2] * rms_norm(DR[:, 3] / scale))
        f_same = np.maximum(errR, EPS) ** (-1.0 / (kR + 1))
        f_other = np.maximum(other, EPS) ** np.where(twoR, -1.0 / 2.0, -1.0 / 3.0)
        switch = f_other > f_same
        factor = np.minimum(MAX_FACTOR, safety[ready] * np.maximum(f_same, f_other))
        self.order[R] = np.where(switch, 3 - kR, kR)
        self.n_equal[R] = 0
        self._set_step(R, self.h[R] * factor)

    def _dense_output(self, A, t_old, t_new, D, two) -> None:
        """Fill t_eval points in (t_old, t_new] from the step's interpolating polynomial."""
        hi = np.searchsorted(self.t_eval, t_new, side="right")
        lo = self.next_eval[A]
        for j in range(int(np.max(hi - lo, initial=0))):
            sel = lo + j < hi
            idx = lo[sel] + j
            s = ((self.t_eval[idx] - t_new[sel]) / self.h[A[sel]])[:, None]
            Ds = D[sel]
            val = Ds[:, 0] + s * Ds[:, 1] + np.where(two[sel, None], 0.5 * s * (s + 1.0) * Ds[:, 2], 0.0)
            self.y_eval[A[sel], :, idx] = val
        self.next_eval[A] = np.maximum(hi, lo)
