"""Dynamical systems as chains: iterated maps, linear recurrences, RNNs over time, rate networks,
and a stiff ODE solver.

Builders return `depthscope.Chain` objects (one step per iteration, each with an analytic tangent
map); their Lyapunov exponents come from `depthscope.estimators.lyapunov`, never from a second copy
of Benettin's method here.

This is the package's face: other packages import dynamics names from here only. The solver's
public names are listed once, in `depthscope.dynamics.solvers`, and re-exported here whole.
"""

from depthscope.dynamics import solvers
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
from depthscope.dynamics._rate import random_rate_chain, rate_chain, rate_coupling, rate_euler_step, rate_step_log_det
from depthscope.dynamics._rnn import rnn_linear, rnn_tanh
from depthscope.dynamics.solvers import *  # noqa: F403  (exactly the names of solvers.__all__)

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
    "logistic_map",
    "scalar_map",
    # recurrent networks over time
    "random_rate_chain",
    "rate_chain",
    "rate_coupling",
    "rate_euler_step",
    "rate_step_log_det",
    "rnn_linear",
    "rnn_tanh",
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
    # the stiff ODE solver: the module, then its names (listed there)
    "solvers",
]
__all__ += solvers.__all__
