"""depthscope: measure, explain and engineer the stability of deep compositional systems.

Depth is a long product of Jacobians. depthscope turns any deep computation (a network's blocks,
an RNN's time steps, a map's iterations, a solver's steps) into a `Chain` and measures how signals
and gradients cross it.
"""

from depthscope import dynamics, estimators, ledger, zoo  # noqa: E402  (subpackages as ds.dynamics, ds.ledger, ds.zoo)
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
from depthscope.estimators import LyapunovResult, lyapunov
from depthscope.probing import BlockStats, ProbeWarning, Report, probe
from depthscope.zoo import create_model, list_models, model_spec, register_model

__all__ = [
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
