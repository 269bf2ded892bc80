"""Public face of depthscope's stiff ODE solver (variable-step BDF-2) and its test problems."""

from depthscope.dynamics._bdf2 import BETA0, MAX_ORDER
from depthscope.dynamics._ivp import BatchOdeResult, OdeResult, solve_ivp
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
    "BETA0",
    "BatchOdeResult",
    "CLOSED_FORM_PROBLEMS",
    "ClosedFormProblem",
    "HIRES",
    "MAX_ORDER",
    "OREGO",
    "OdeResult",
    "ROBER",
    "STIFF_PROBLEMS",
    "StiffProblem",
    "VDPOL",
    "global_relative_error",
    "max_relative_error",
    "scd",
    "solve_ivp",
]
