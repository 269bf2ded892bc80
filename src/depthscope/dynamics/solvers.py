"""The stiff ODE solver (variable-step BDF-2), its building blocks and its test problems.

This module is the one list of the solver's public names: `depthscope.dynamics` re-exports
everything in ``__all__`` below, so ``ds.dynamics.solve_ivp`` and ``ds.dynamics.solvers.solve_ivp``
are the same object. A new public solver name is added here only.
"""

from depthscope.dynamics._bdf2 import BETA0, GAMMA, MAX_ORDER, BDF2Solver, newton_matrix
from depthscope.dynamics._error_control import local_tolerance_factor, tolerances_for_local
from depthscope.dynamics._ivp import BatchOdeResult, OdeResult, solve_ivp
from depthscope.dynamics._ode_base import BatchOdeSolver, SolverOutput
from depthscope.dynamics._stiff_problems import (
    CLOSED_FORM_PROBLEMS,
    HIRES,
    OREGO,
    ROBER,
    STIFF_PROBLEMS,
    VDPOL,
    ClosedFormProblem,
    StiffProblem,
    global_relative_error,
    max_relative_error,
    scd,
)

__all__ = [
    # the front end and its results
    "BatchOdeResult",
    "OdeResult",
    "solve_ivp",
    # the method: base class (its docstring states the contract for a new method) and BDF-2
    "BDF2Solver",
    "BETA0",
    "BatchOdeSolver",
    "GAMMA",
    "MAX_ORDER",
    "SolverOutput",
    "local_tolerance_factor",
    "newton_matrix",
    "tolerances_for_local",
    # test problems (the stiff test set and problems with closed-form solutions)
    "CLOSED_FORM_PROBLEMS",
    "ClosedFormProblem",
    "HIRES",
    "OREGO",
    "ROBER",
    "STIFF_PROBLEMS",
    "StiffProblem",
    "VDPOL",
    "global_relative_error",
    "max_relative_error",
    "scd",
]
