"""Bridges from depthscope to training frameworks.

`depthscope.integrations.lightning` holds `DepthscopeCallback`, the `depthscope.Monitor` as a
PyTorch Lightning callback. It is imported as its own module (``from
depthscope.integrations.lightning import DepthscopeCallback``) so that ``import depthscope`` never
imports Lightning.
"""

__all__: list[str] = []
