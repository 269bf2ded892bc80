"""Chains of steps: the one abstraction for depth (layers, time steps, iterations, solver steps).

The face of the package: other packages import these names from here, never from the private
modules. Inside, the modules form layers (lowest first): `_step` (`Step`, `run_step`) and
`_module` (`ChainModule`); the adapters `_discover` (any ``nn.Module``) and `_hf` (Hugging Face),
which return lists of steps; `_chain` (`Chain`, whose constructors call the adapters) and beside
it `_batch` (the input checks every measurement runs first).
"""

from depthscope.chain._batch import check_batch, check_examples_independent
from depthscope.chain._chain import Chain
from depthscope.chain._module import ChainModule
from depthscope.chain._step import Step, StepFn, run_step

__all__ = ["Chain", "ChainModule", "Step", "StepFn", "check_batch", "check_examples_independent", "run_step"]
