"""depthscope: measure, explain and engineer the stability of deep compositional systems.

Depth is a long product of Jacobians. depthscope turns any deep computation (a network's blocks,
an RNN's time steps, a map's iterations, a solver's steps) into a `Chain` and measures how signals
and gradients cross it.
"""

from depthscope import doctor, dynamics, estimators, ledger, zoo  # noqa: E402  (subpackages as ds.doctor, ds.dynamics, ...)
from depthscope._errors import (
    ChainError,
    DepthscopeError,
    InputError,
    NoBlocksError,
    NonFiniteError,
    UnknownModelError,
)
from depthscope._version import __version__
from depthscope.chain import Chain, ChainModule, Step
from depthscope.design import grow, growth_bound, paths, prune, rank, skip_density
from depthscope.doctor import diagnose, meanfield, verify
from depthscope.estimators import LyapunovResult, lyapunov
from depthscope.monitor import Monitor
from depthscope.probing import BlockStats, ProbeWarning, Report, probe
from depthscope.zoo import create_model, list_models, model_spec, register_model

__all__ = [
    "Monitor",
    "grow",
    "growth_bound",
    "paths",
    "prune",
    "rank",
    "skip_density",
    "diagnose",
    "doctor",
    "meanfield",
    "verify",
    "BlockStats",
    "LyapunovResult",
    "ProbeWarning",
    "Report",
    "lyapunov",
    "probe",
    "Chain",
    "ChainError",
    "ChainModule",
    "DepthscopeError",
    "InputError",
    "NoBlocksError",
    "NonFiniteError",
    "Step",
    "UnknownModelError",
    "__version__",
    "create_model",
    "dynamics",
    "estimators",
    "ledger",
    "zoo",
    "list_models",
    "model_spec",
    "register_model",
]
