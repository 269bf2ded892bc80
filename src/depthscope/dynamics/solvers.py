"""Public face of depthscope's stiff ODE solver (variable-step BDF-2) and its test problems."""

from depthscope.dynamics._bdf2 import BETA0, MAX_ORDER
from depthscope.dynamics._ivp import BatchOdeResult, OdeResult, solve_ivp
from depthscope.dynamics._stiff_problems import (
    HIRES,
    OREGO,
    ROBER,
    STIFF_PROBLEMS,
    VDPOL,
    StiffProblem,
    max_relative_error,
    scd,
)

__all__ = [
    "BETA0",
    "BatchOdeResult",
    "HIRES",
    "MAX_ORDER",
    "OREGO",
    "OdeResult",
    "ROBER",
    "STIFF_PROBLEMS",
    "StiffProblem",
    "VDPOL",
    "max_relative_error",
    "scd",
    "solve_ivp",
]
