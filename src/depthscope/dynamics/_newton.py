"""Implicit steps: solving ``R(d) = d - c f(t_new, y_pred + d) + psi = 0`` by simplified Newton.

`ImplicitBatchSolver` adds to `BatchOdeSolver` what every implicit one-step-equation method needs:
the Jacobians of each system, the factorised Newton matrices ``I - c J`` (reused across steps while
c barely changes), the simplified Newton iteration with a convergence-rate stop (CVODE, RADAU5),
and the recovery when it fails (fresh Jacobian, then fresh matrix, then a shorter step). The method
supplies the predictor ``y_pred``, the history term ``psi`` and ``c`` (for BDF: h beta0).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.linalg

from depthscope.dynamics._ode_base import EPS, BatchOdeSolver, nonfinite_entries

# Newton iterations per attempted step before giving up (Hairer & Wanner use 4 to 7 for BDF).
NEWTON_MAXITER = 4
# Newton stops once the predicted remaining iteration error is below this fraction of the error
# tolerance (CVODE-style; Hairer's sqrt(rtol) <= 3% rule costs 20-40% more evaluations on the test set
# for no accuracy gained at matched error, measured with benchmarks/bdf2_vs_scipy.py).
NEWTON_TOL = 0.2
# The convergence rate of the previous step's Newton iteration, raised to this power, predicts the
# current one so a step may stop after one iteration (the "faccon" rule of RADAU5).
ETA_EXPONENT = 0.8
# Keep the factorised Newton matrix while c = h beta0 differs from the one it was built with by less
# than this relative amount; the residual always uses the true c, so a stale matrix only slows Newton.
LU_REUSE_RTOL = 0.3


def iteration_matrix(J: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``I - c J`` for J (w, n, n) and c (w,): the Newton matrix of R(d) = d - c f(y_pred + d) + psi."""
    return np.eye(J.shape[-1]) - c[:, None, None] * J


class ImplicitBatchSolver(BatchOdeSolver):
    """A `BatchOdeSolver` whose step solves an implicit equation by simplified Newton.

    Beyond the base's contract, a subclass calls `_init_newton` once its per-step tolerances are
    known, evaluates the first Jacobians with `_start_jacobians`, and in each `_step_impl` calls
    `_refresh_newton_matrices`, `_newton` and, where Newton failed, `_newton_failed`.

    State by position: ``J`` (n * n, M) Jacobians (row i * n + j holds d f_i / d y_j), ``jac_fresh``
    (whether J was evaluated at this step), the Newton matrices, ``c_lu`` the c each was built with
    (NaN where none is usable), and ``eta`` the last Newton contraction estimate rate / (1 - rate).
    """

    def _init_newton(self, rtol: float, atol: np.ndarray, norm: Callable[[np.ndarray], np.ndarray]) -> None:
        """Set the per-step tolerances (rtol scalar, atol (n,)) and the norm ((n, w) -> (w,)) that
        every error test and Newton's stop use, and allocate the Newton state."""
        M, n = self.M, self.n
        self.rtol, self.atol = rtol, atol
        self.atol_col = self.atol[:, None]
        self.newton_tol = max(10.0 * EPS / self.rtol, NEWTON_TOL)
        self.eta = np.ones(M)
        # Factorised Newton matrices I - c J: one system by LU, a batch by explicit inverses (n, n, M)
        # so that a Newton solve is one batched matrix-vector product.
        self.inv = np.zeros((n, n, M))
        self.lu: tuple[np.ndarray, np.ndarray] | None = None
        self.c_lu = np.full(M, np.nan)
        self._norm = norm

    def _start_jacobians(self, y0: np.ndarray) -> None:
        """Evaluate the Jacobians at (t0, y0) (M, n), all positions."""
        M, n = self.M, self.n
        self.J = self.jac(self.t, y0).reshape(M, n * n).T.copy()
        self.jac_fresh = np.ones(M, dtype=bool)

    def _start_checks(self, f0: np.ndarray) -> None:
        super()._start_checks(f0)
        w = self.w  # the systems still running sit at positions 0..w-1
        self._check_jacobians(np.arange(w), self.t[:w], self._state()[:, :w])
        if self.jac_nonfinite:
            self._fail_jacobians()

    def _by_position(self) -> list[np.ndarray]:
        return super()._by_position() + [self.eta, self.c_lu, self.jac_fresh, self.J, self.inv]

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

    # -- Newton matrices ----------------------------------------------------------------------
    def _refresh_newton_matrices(self, c: np.ndarray) -> None:
        """Refactor where the Newton matrix is missing or was built for a too different c (w,)
        (c_lu is NaN where there is no usable matrix)."""
        w = self.w
        fresh = np.abs(c / self.c_lu[:w] - 1.0) <= LU_REUSE_RTOL
        n_fresh = np.count_nonzero(fresh)
        if n_fresh < w:
            self._factor(~fresh, w - n_fresh, c)

    def _factor(self, stale: np.ndarray, n_stale: int, c: np.ndarray) -> None:
        """Factorise ``I - c J`` where ``stale`` (w,) is set; c (w,)."""
        self.nlu += n_stale
        if self.n <= 2 and not self.single:
            self._invert_small(stale, n_stale, c)
            return
        S = np.flatnonzero(stale)
        n = self.n
        A = iteration_matrix(self.J[:, S].T.reshape(len(S), n, n), c[S])
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

    def _invert_small(self, stale: np.ndarray, n_stale: int, c: np.ndarray) -> None:
        """Closed-form inverses of ``I - c J`` (n = 1 or 2) for the running positions flagged in
        ``stale`` (w,), ``n_stale`` of them; c (w,).

        Far cheaper than LAPACK for tiny matrices. The inverse only steers Newton (the residual is
        always exact), so its rounding does not reach the solution. A matrix counts as usable when
        its entries are finite and its determinant is nonzero. Typically a few of several hundred
        running systems need a new matrix in a round, so only those are computed.
        """
        w = self.w
        rows = slice(0, w) if n_stale == w else np.flatnonzero(stale)
        J, c = self.J[:, rows], c[rows]
        inv = self.inv.reshape(self.n * self.n, self.M)
        minus_c = -c
        if self.n == 1:
            det = 1.0 + minus_c * J[0]
            inv[0, rows] = 1.0 / det
        else:  # [[a, b], [g, e]]^-1 = [[e, -b], [-g, a]] / det
            a, b = 1.0 + minus_c * J[0], minus_c * J[1]
            g, e = minus_c * J[2], 1.0 + minus_c * J[3]
            det = a * e - b * g
            r = 1.0 / det
            minus_r = -r
            inv[0, rows] = e * r
            inv[1, rows] = b * minus_r
            inv[2, rows] = g * minus_r
            inv[3, rows] = a * r
        good = np.isfinite(det) & (det != 0.0)  # (a non-finite entry makes det non-finite)
        self.c_lu[rows] = np.where(good, c, np.nan)

    def _solve_lu(self, r: np.ndarray) -> np.ndarray:
        """Solve ``(I - c J) x = r`` for the one system: r (n, 1) -> x (n, 1). LAPACK's getrs, as
        scipy.linalg.lu_solve calls it, without that wrapper's argument handling, which costs more
        than the solve itself at these sizes."""
        x, _ = scipy.linalg.lapack.dgetrs(*self.lu, r[:, 0])
        return x[:, None]

    # -- the iteration ----------------------------------------------------------------------------
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
        # Solves with the Newton matrices: LU for one system, the batch's inverses (n, n, w) else.
        single, solve_lu, inv = self.single, self._solve_lu, self.inv[:, :, :w]
        ids, pos_of, Ypos, fun, norm = self.ids[:w], self.pos_of, self.Ypos, self.fun, self._norm
        tol = self.newton_tol
        y, dy_norm_old = y_pred, None
        for it in range(NEWTON_MAXITER):
            if full:  # every system runs: fun gets the states in caller order, a fresh (M, n) array
                F = fun(T, y.T.copy()).T
            else:
                Ypos[:w] = y.T
                F = fun(T, Ypos.take(pos_of, axis=0)).take(ids, axis=0).T
            # A non-finite f gives a non-finite dy (the matrix is nonsingular), which stops the row:
            # through the isfinite test on the first iteration, as a rate that is not < 1 after.
            if it == 0:
                if not np.count_nonzero(iterating):
                    d, converged, n_iter = np.zeros_like(y_pred), iterating, np.zeros(w, dtype=np.int64)
                    break
                r = c * F - psi
                dy = solve_lu(r) if single else np.einsum("ijw,jw->iw", inv, r)
                dy_norm = norm(dy / scale)
                finite = np.isfinite(dy_norm)
                if np.count_nonzero(finite) < w:
                    self._note_nonfinite_fun(iterating & ~finite, t_new, y, F)
                iterating &= finite
                d = np.where(iterating, dy, 0.0)
                y = y_pred + d
                n_iter = iterating.astype(np.int64)
            else:
                r = c * F - psi - d
                dy = solve_lu(r) if single else np.einsum("ijw,jw->iw", inv, r)
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

    def _newton_failed(self, F: np.ndarray, t_new: np.ndarray, y_pred: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Newton failed at positions F: refresh the Jacobian, else the Newton matrix, else halve the
        step. Returns the (w,) mask of positions whose step is to be halved."""
        self.nrejected[F] += 1
        stale_jac = ~self.jac_fresh[F]
        need_jac = F[stale_jac]
        if len(need_jac):
            T, Y = self.t.copy(), self._state().T.copy()
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

    def _note_nonfinite_fun(self, bad: np.ndarray, t_new: np.ndarray, y: np.ndarray, F: np.ndarray) -> None:
        """Record, for the positions flagged in ``bad`` (w,) whose f = F (n, w) at (t_new, y) is not
        finite, why their attempt failed (named if their step then collapses)."""
        for p in np.flatnonzero(bad & ~np.isfinite(F).all(axis=0)):
            self.fun_nonfinite[int(self.ids[p])] = (
                f"fun returned NaN or Inf at t = {t_new[p]:.17g} (components {nonfinite_entries(F[:, p], (self.n,))}) "
                f"for y = {np.array2string(y[:, p], precision=6)}"
            )
