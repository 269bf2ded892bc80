"""Dynamical systems as chains: iterated maps, linear recurrences, RNNs over time, rate networks,
and a stiff ODE solver.

Builders return `depthscope.Chain` objects (one step per iteration, each with an analytic tangent
map); their Lyapunov exponents come from `depthscope.estimators.lyapunov`, never from a second copy
of Benettin's method here.
"""

from depthscope.dynamics._cstr import (
    CSTR,
    HopfResult,
    SteadyState,
    exothermic_cstr,
    exothermic_starts,
    find_hopf,
    gray_scott,
    gray_scott_batch,
    gray_scott_hopf,
    gray_scott_starts,
    gray_scott_upper,
    steady_states,
)
from depthscope.dynamics._linear import LinearRecurrenceAnalysis, analyze_linear_recurrence
from depthscope.dynamics._maps import (
    FIBONACCI,
    HENON_A,
    HENON_B,
    fibonacci,
    henon_map,
    linear_map,
    logistic_map,
    scalar_map,
)
from depthscope.dynamics._rate import rate_chain, rate_coupling, rate_network, rate_step_log_det
from depthscope.dynamics._rnn import linear_rnn, tanh_rnn
from depthscope.dynamics.solvers import (
    BETA0,
    HIRES,
    MAX_ORDER,
    OREGO,
    ROBER,
    STIFF_PROBLEMS,
    VDPOL,
    BatchOdeResult,
    OdeResult,
    StiffProblem,
    max_relative_error,
    scd,
    solve_ivp,
)

__all__ = [
    # maps and recurrences
    "FIBONACCI",
    "HENON_A",
    "HENON_B",
    "LinearRecurrenceAnalysis",
    "analyze_linear_recurrence",
    "fibonacci",
    "henon_map",
    "linear_map",
    "linear_rnn",
    "logistic_map",
    "rate_chain",
    "rate_coupling",
    "rate_network",
    "rate_step_log_det",
    "scalar_map",
    "tanh_rnn",
    # reactors (claim J8)
    "CSTR",
    "SteadyState",
    "HopfResult",
    "steady_states",
    "find_hopf",
    "gray_scott",
    "gray_scott_hopf",
    "gray_scott_upper",
    "gray_scott_starts",
    "gray_scott_batch",
    "exothermic_cstr",
    "exothermic_starts",
    # the stiff ODE solver (depthscope.dynamics.solvers)
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
