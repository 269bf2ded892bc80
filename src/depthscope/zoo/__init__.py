"""The zoo: every network family the theory reasons about, registered by name.

Each family lives in its own module; importing it registers its models.
"""

from depthscope.zoo import (
    cifar_resnet,  # noqa: F401
    densenet,  # noqa: F401
    mlp,  # noqa: F401  (registers plain_mlp, resnet_mlp)
    procresnet,  # noqa: F401
    rnn,  # noqa: F401
    shrinkage,  # noqa: F401
    toys,  # noqa: F401
    transformer,  # noqa: F401
)
from depthscope.zoo._layers import ACTIVATIONS, default_sigma_w, make_activation
from depthscope.zoo._registry import ModelSpec, create_model, list_models, model_spec, register_model
from depthscope.zoo.procrustes import conv_operator_singular_values, procrustes_

__all__ = [
    "ACTIVATIONS",
    "ModelSpec",
    "conv_operator_singular_values",
    "create_model",
    "default_sigma_w",
    "list_models",
    "make_activation",
    "model_spec",
    "procrustes_",
    "register_model",
]
