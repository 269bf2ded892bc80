"""Estimators of Jacobian quantities along a chain: matrix-free and exact."""

from depthscope.estimators._lanczos import lanczos_top_eigenvalue
from depthscope.estimators._linearized import LinearizedChain
from depthscope.estimators._lyapunov import LyapunovResult, lyapunov

__all__ = ["LinearizedChain", "LyapunovResult", "lanczos_top_eigenvalue", "lyapunov"]
