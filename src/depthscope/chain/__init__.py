"""Chains of steps: the one abstraction for depth (layers, time steps, iterations, solver steps)."""

from depthscope.chain._chain import Chain, Step
from depthscope.chain._module import ChainModule

__all__ = ["Chain", "ChainModule", "Step"]
