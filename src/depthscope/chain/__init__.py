"""Chains of steps: the one abstraction for depth (layers, time steps, iterations, solver steps).

The face of the package: other packages import these names from here, never from the private
modules. Inside, the modules form layers (lowest first): `_step` (`Step`, `run_step`) and
`_module` (`ChainModule`); `_repeat` (stateful steps) and `_discover` (cutting a module's forward
at given blocks, through hooks); the adapters, `_adapters` (the `Adapter` contract), `_libraries`
(torchvision and timm) and `_hf` (Hugging Face); `_find` (the registry `ADAPTERS` and the search
order); `_chain` (`Chain`, whose constructors call `_find` and `_hf`) and beside it `_batch` (the
input checks every measurement runs first).
"""

from depthscope.chain._adapters import Adapter, LibraryAdapter
from depthscope.chain._batch import check_batch, check_examples_independent
from depthscope.chain._chain import Chain
from depthscope.chain._find import ADAPTERS, find_adapter, register_adapter
from depthscope.chain._module import ChainModule
from depthscope.chain._step import Step, StepFn, run_step

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Chain",
    "ChainModule",
    "LibraryAdapter",
    "Step",
    "StepFn",
    "check_batch",
    "check_examples_independent",
    "find_adapter",
    "register_adapter",
    "run_step",
]
