"""Tests of the solver base class: the public `step` and its bookkeeping (`_ode_base`)."""

from __future__ import annotations

import numpy as np
import pytest

from depthscope.dynamics import ROBER, BatchOdeSolver, BDF2Solver


def _rober_solver(**kwargs) -> BDF2Solver:
    args = dict(rtol=1e-4, atol=np.asarray(ROBER.atol, dtype=np.float64) * np.ones(3), first_step=None)
    args.update(max_step=np.inf, t_eval=None, record_steps=True, max_steps=None)
    args.update(kwargs)

    def fun(t, Y):
        return ROBER.fun(float(t[0]), Y[0])[None]

    def jac(t, Y):
        return ROBER.jac(float(t[0]), Y[0])[None]

    return BDF2Solver(fun, jac, 0.0, 10.0, np.asarray(ROBER.y0, dtype=np.float64)[None], **args)


def test_bdf2_solver_is_a_batch_ode_solver():
    assert issubclass(BDF2Solver, BatchOdeSolver)


def test_stepping_by_hand_is_run():
    """`run` is `step` repeated until no system is left: the same steps, states and counts."""
    by_run = _rober_solver().run()
    solver = _rober_solver()
    with np.errstate(all="ignore"):
        while solver.w:
            solver.step()
    by_hand = solver.run()  # nothing left to step: only collects the output
    assert by_hand.steps_t == by_run.steps_t
    np.testing.assert_array_equal(by_hand.y_final, by_run.y_final)
    assert (by_hand.nfev, by_hand.njev, by_hand.nlu) == (by_run.nfev, by_run.njev, by_run.nlu)
    with pytest.raises(RuntimeError, match="stopped"):
        solver.step()


def test_step_stops_a_system_at_max_steps_with_a_message():
    solver = _rober_solver(max_steps=5)
    out = solver.run()
    assert out.status[0] == -1 and "max_steps = 5" in out.messages[0]
    assert out.nsteps[0] == 5
