"""The base class of depthscope's ODE solvers: M independent systems advanced in lockstep rounds.

`BatchOdeSolver` owns what every step-by-step solver needs whatever its formula: the layout of
systems in positions, the step-size clipping to ``max_step`` and the end of the interval, the
counters, and the bookkeeping of failures (which system stopped, where, and why). A method
fills in one attempted step (`BatchOdeSolver._step_impl`); the contract is in the class docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# float64 unit roundoff.
EPS = np.finfo(np.float64).eps
# A step below this many units in the last place of t cannot advance t reliably: report failure.
MIN_STEP_ULPS = 10.0
# Non-finite entries or components named in a failure message before the rest are only counted.
MAX_NAMED_ENTRIES = 4

# ``fun(t, Y)``: t (M,), Y (M, n) -> (M, n), one independent system per row.
BatchFun = Callable[[np.ndarray, np.ndarray], np.ndarray]
# ``jac(t, Y)``: t (M,), Y (M, n) -> (M, n, n), the Jacobian d f_m / d y_m of each system.
BatchJac = Callable[[np.ndarray, np.ndarray], np.ndarray]


def nonfinite_entries(a: np.ndarray, shape: tuple[int, ...]) -> str:
    """Where ``a`` (flattened ``shape``) is NaN or infinite, as text: "(0, 1), (1, 1)" for a matrix,
    "2, 3" for a vector, the first MAX_NAMED_ENTRIES named and the rest counted ("... and 5 more")."""
    bad = np.argwhere(~np.isfinite(np.asarray(a).reshape(shape)))
    named = ", ".join(
        str(tuple(int(i) for i in b)) if len(shape) > 1 else str(int(b[0])) for b in bad[:MAX_NAMED_ENTRIES]
    )
    return named + (f" and {len(bad) - MAX_NAMED_ENTRIES} more" if len(bad) > MAX_NAMED_ENTRIES else "")


@dataclass
class SolverOutput:
    """What a solver hands to the front end (arrays indexed by system m of M)."""

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


class BatchOdeSolver:
    """Advance M independent systems ``y' = f(t, y)`` from t0 to t_end, one attempted step per round.

    Args:
        fun: ``fun(t, Y)`` with t (M,), Y (M, n) -> (M, n); rows are independent systems.
        jac: ``jac(t, Y)`` with t (M,), Y (M, n) -> (M, n, n) Jacobians d f_m / d y_m.
        t0, t_end: start and end time, t_end > t0.
        y0: (M, n) initial states.
        max_step: upper bound on every step.
        t_eval: (T,) sorted times in [t0, t_end] for dense output, or None.
        record_steps: keep every accepted (t, y) of system 0 (the unbatched front end).
        max_steps: accepted steps per system before giving up, or None.

    Layout. Per-system state lives in *positions*: the w systems still running occupy positions
    0..w-1 (``ids[p]`` is the system at position p, ``pos_of`` the inverse), and a system that
    finishes or fails is moved past them, keeping its final state (`_retire`). So every per-round
    operation works on contiguous slices ``[:w]`` (views, no gathers) and costs nothing for systems
    that are done, which matters because the slowest system sets the number of rounds. Vectors are
    stored component-major, (n, M), so that per-system scalars broadcast along the long axis.
    ``fun`` and ``jac`` still see the whole batch in the caller's order; finished systems sit at
    their final state there.

    Public interface: `step` attempts one step for every running system, `run` steps until none
    is left and returns a `SolverOutput`. `step` does the bookkeeping around the method: it stops
    systems whose Jacobian was found not finite, clips each step to ``max_step`` and onto the end
    of the interval, stops systems whose step t cannot resolve or that reached ``max_steps``, and
    only then calls `_step_impl` for the systems left.

    Contract for a method (a subclass):

    1. Call ``BatchOdeSolver.__init__`` first; then build the method's state, one entry per
       position on the last axis of each array, evaluate ``f(t0, y0)`` and the first steps
       ``self.h`` (M,), and end with `_start_checks`.
    2. Implement `_state`: the current solution by position, (n, M) (a view).
    3. Implement `_by_position`: every array of the method indexed by position on its last axis
       (extending the base's list), so that `_retire` moves it with the systems.
    4. Implement `_change_steps(h_new)`: set ``self.h[:w]`` to ``h_new`` (w,) and re-express
       whatever history depends on the step (the base calls it when it clips steps).
    5. Implement `_step_impl`: one attempted step with ``self.h[:w]`` for positions 0..w-1,
       from ``self.t[:w]`` to `_step_ends`. It updates the solution, ``t``, the counters
       ``nsteps`` and ``nrejected``, calls `_record_accepted` for the accepted positions (needed only
       when ``record_steps`` or ``fun_nonfinite`` is set), chooses the next steps, and retires the
       systems that reached t_end (`_finished`, `_retire`).
    6. Never raise on a numerical failure: stop the system with `_fail` (at once) or record a
       message in ``jac_nonfinite`` (stops it at the start of the next round) or in
       ``fun_nonfinite`` (named if its step then collapses).
    7. Count every evaluation: call ``fun`` and ``jac`` through the methods of that name.
    """

    def __init__(
        self,
        fun: BatchFun,
        jac: BatchJac,
        t0: float,
        t_end: float,
        y0: np.ndarray,
        max_step: float,
        t_eval: np.ndarray | None,
        record_steps: bool,
        max_steps: int | None,
    ):
        self.fun_raw, self.jac_raw = fun, jac
        self.t_end = float(t_end)
        M, n = y0.shape
        self.M, self.n = M, n
        self.max_step = float(max_step)
        self.max_steps = max_steps
        # A step this close to the end of the interval snaps onto it.
        self.end_tol = MIN_STEP_ULPS * np.spacing(self.t_end)
        # No step at or above this is below MIN_STEP_ULPS units in the last place of any t in the span.
        self.h_floor = MIN_STEP_ULPS * max(abs(np.spacing(float(t0))), abs(np.spacing(self.t_end)))
        self.nfev = self.njev = self.nlu = 0
        self.single = M == 1
        # Whether the last clipping landed some step exactly on t_end (see `_step_ends`).
        self.snapped = False

        # Position-ordered state (see the class docstring); status and messages by system.
        self.w = M
        self.ids = np.arange(M)
        self.pos_of = np.arange(M)
        self.t = np.full(M, float(t0))
        self.h = np.zeros(M)  # the method sets the first steps
        self.status = np.zeros(M, dtype=np.int64)
        self.messages = ["" for _ in range(M)]
        self.nsteps = np.zeros(M, dtype=np.int64)
        self.nrejected = np.zeros(M, dtype=np.int64)
        # The arguments of fun in position order: running systems are overwritten before each call.
        self.Ypos = np.array(y0, dtype=np.float64)
        self.Tpos = self.t.copy()
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

    # -- what a method provides (see the contract) --------------------------------------------
    def _state(self) -> np.ndarray:
        """The current solution by position, (n, M)."""
        raise NotImplementedError

    def _by_position(self) -> list[np.ndarray]:
        """The arrays indexed by position on their last axis (extended by each method)."""
        vectors = [self.t, self.h, self.nsteps, self.nrejected, self.ids]
        if self.t_eval is not None:
            vectors += [self.next_eval, self.next_time]
        return vectors

    def _change_steps(self, h_new: np.ndarray) -> None:
        """Set the steps of positions 0..w-1 to ``h_new`` (w,), re-expressing the method's history."""
        raise NotImplementedError

    def _step_impl(self) -> None:
        """One attempted step for each running system (positions 0..w-1)."""
        raise NotImplementedError

    def _start_checks(self, f0: np.ndarray) -> None:
        """Stop the systems whose ``f(t0, y0)`` (M, n) is not finite (the method's own start checks
        extend this)."""
        not_finite = ~np.isfinite(f0).all(axis=1)
        if not_finite.any():
            self._fail(np.flatnonzero(not_finite), "fun(t0, y0) is not finite")

    # -- evaluations ------------------------------------------------------------------------
    def fun(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        self.nfev += 1
        return self.fun_raw(t, Y)

    def jac(self, t: np.ndarray, Y: np.ndarray) -> np.ndarray:
        self.njev += 1
        return self.jac_raw(t, Y)

    # -- the public loop ----------------------------------------------------------------------
    def step(self) -> None:
        """Attempt one step for every running system; stops systems that cannot go on (see the
        class docstring). Raises RuntimeError when no system is running."""
        if self.w == 0:
            raise RuntimeError("every system has stopped; there is no step to attempt")
        if self.jac_nonfinite:
            self._fail_jacobians()
        if self.w:
            w = self.w
            t, h = self.t[:w], self.h[:w]  # views: a change of step writes h in place
            self._clip_steps(t, h)
            if np.count_nonzero(h < self.h_floor):  # a cheap bound first: steps this large are resolved
                self._stop_unresolvable_steps(t, h)
        if self.w and self.max_steps is not None:
            self._stop_at_max_steps()
        if self.w:
            self._step_impl()

    def run(self) -> SolverOutput:
        """Step until every system has reached t_end or failed; returns what each reached."""
        with np.errstate(all="ignore"):  # overflow in a trial step is detected and handled
            while self.w > 0:
                self.step()
        M, ids = self.M, self.ids
        t_final, y_final = np.empty(M), np.empty((M, self.n))
        nsteps, nrejected = np.empty(M, dtype=np.int64), np.empty(M, dtype=np.int64)
        t_final[ids], y_final[ids] = self.t, self._state().T
        nsteps[ids], nrejected[ids] = self.nsteps, self.nrejected
        return SolverOutput(
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

    # -- bookkeeping around a step --------------------------------------------------------------
    def _clip_steps(self, t: np.ndarray, h: np.ndarray) -> None:
        """Clip the steps h (w,) at times t (w,) to max_step and to the end of the interval, snapping
        onto the end rather than leaving a sliver t cannot resolve."""
        remaining = self.t_end - t
        h_clip = np.minimum(h, self.max_step) if self.max_step < np.inf else h
        snap = h_clip >= remaining - self.end_tol
        self.snapped = bool(np.count_nonzero(snap))
        if self.snapped or h_clip is not h:
            h_clip = np.where(snap, remaining, h_clip)
            if np.count_nonzero(h_clip != h):
                self._change_steps(h_clip)

    def _step_ends(self, t: np.ndarray, h: np.ndarray) -> np.ndarray:
        """t + h for the running positions' t, h (w,), exactly t_end for the steps clipped onto the end."""
        t_new = t + h
        if self.snapped:
            t_new[h == self.t_end - t] = self.t_end
        return t_new

    def _stop_unresolvable_steps(self, t: np.ndarray, h: np.ndarray) -> None:
        """Stop the systems whose step h (w,) is below what floating point resolves at their t (w,)."""
        tiny = (h < self.h_floor) & (h < MIN_STEP_ULPS * np.spacing(t))
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

    def _stop_at_max_steps(self) -> None:
        """Stop the systems that took max_steps accepted steps."""
        over = self.nsteps[: self.w] >= self.max_steps
        if np.count_nonzero(over):
            message = f"reached max_steps = {self.max_steps} before the end, at t = {{t:.6g}}"
            self._fail(np.flatnonzero(over), message)

    def _record_accepted(self, acc: np.ndarray | None, t_new: np.ndarray, y_new: np.ndarray) -> None:
        """After a round: clear the failure notes of systems that then took a step, and record system
        0's step when record_steps. ``acc`` (w,) flags the accepted positions (None: all);
        t_new (w,), y_new (n, w)."""
        w = self.w
        if self.fun_nonfinite:  # a later accepted step clears the record
            for m in list(self.fun_nonfinite):
                p = self.pos_of[m]
                if p < w and (acc is None or acc[p]):
                    del self.fun_nonfinite[m]
        if self.record_steps:
            p = self.pos_of[0]
            if p < w and (acc is None or acc[p]):
                self.steps_t.append(float(t_new[p]))
                self.steps_y.append(y_new[:, p].copy())

    def _finished(self, acc: np.ndarray | None, t_new: np.ndarray) -> np.ndarray | None:
        """The (w,) mask of accepted positions (``acc``, None: all) whose step ended at t_new (w,) >= t_end,
        or None if none did."""
        finished = t_new >= self.t_end
        if acc is not None:
            finished &= acc
        return finished if np.count_nonzero(finished) else None

    # -- bookkeeping of positions -------------------------------------------------------------
    def _fail(self, P: np.ndarray, message: str, by_system: dict[int, str] | None = None) -> None:
        """Stop the running systems at positions P (int array) with a failure message (``{t}`` and
        ``{h}`` filled in), or the message ``by_system`` holds for a system."""
        for p in P:
            m = self.ids[p]
            if by_system is not None and m in by_system:
                self.messages[m] = by_system[m]
            else:
                self.messages[m] = message.format(t=self.t[p], h=self.h[p])
            self.status[m] = -1
        gone = np.zeros(self.w, dtype=bool)
        gone[P] = True
        self._retire(gone)

    def _fail_jacobians(self) -> None:
        """Stop the running systems recorded in ``jac_nonfinite``."""
        P = self.pos_of[np.fromiter(self.jac_nonfinite, dtype=np.int64)]
        P = P[P < self.w]
        self._fail(P, "", by_system=self.jac_nonfinite)
        self.jac_nonfinite = {}

    def _retire(self, gone: np.ndarray) -> None:
        """Move the running systems flagged in ``gone`` (w,) past the running ones, keeping their state."""
        w = self.w
        perm = np.concatenate((np.flatnonzero(~gone), np.flatnonzero(gone)))
        w_new = w - int(np.count_nonzero(gone))
        for a in self._by_position():
            a[..., :w] = a.take(perm, axis=-1)
        self.pos_of[self.ids[:w]] = np.arange(w)
        # fun keeps seeing a stopped system at its final state.
        self.Ypos[w_new:w] = self._state()[:, w_new:w].T
        self.Tpos[w_new:w] = self.t[w_new:w]
        self.w = w_new
        if self.t_eval is not None:
            self.eval_min = self.next_time[:w_new].min(initial=np.inf)
