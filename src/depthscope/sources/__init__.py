"""Models to probe from outside the zoo, built with random weights (nothing is ever downloaded).

The face of the package. Each source returns a `Built` (model in eval mode, an input batch, a
label), so ``ds.probe(*from_hf("llama")[:2])`` probes a tiny Llama. Inside: `_built` (`Built`,
errors and input helpers), `_factory` (a user's ``module:callable``), `_hf` (Hugging Face
families), `_vision` (torchvision and timm). The ``depthscope probe`` command calls these.
"""

from depthscope.sources._built import DEFAULT_IMAGE_SHAPE, Built, MissingLibraryError, load_input, parse_shape
from depthscope.sources._factory import from_factory, resolve_factory
from depthscope.sources._hf import DEFAULT_SEQ, HF_FAMILIES, HFFamily, from_hf, hf_families
from depthscope.sources._vision import from_timm, from_torchvision

__all__ = [
    "DEFAULT_IMAGE_SHAPE",
    "DEFAULT_SEQ",
    "HF_FAMILIES",
    "Built",
    "HFFamily",
    "MissingLibraryError",
    "from_factory",
    "from_hf",
    "from_timm",
    "from_torchvision",
    "hf_families",
    "load_input",
    "parse_shape",
    "resolve_factory",
]
