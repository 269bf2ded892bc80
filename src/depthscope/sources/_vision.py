"""torchvision and timm models by name, with random weights: never a pretrained download.

Pretrained weights are not offered: loading them may fetch files from the network, which
depthscope never does; a user with weights on disk builds the model and calls `depthscope.probe`.
"""

from __future__ import annotations

from typing import Any

from depthscope.sources._built import (
    DEFAULT_IMAGE_SHAPE,
    Built,
    as_shape,
    random_input,
    require,
    seeded_build,
    unknown_name,
)

TORCHVISION_INSTALL = "pip install 'depthscope[vision]' (torchvision)"
TIMM_INSTALL = "pip install timm"


def from_torchvision(
    name: str, input_shape: tuple[int, ...] | str | None = None, *, batch: int = 1, seed: int = 0, **kwargs: Any
) -> Built:
    """``torchvision.models.get_model(name, weights=None, **kwargs)`` and a pixel batch.

    ``input_shape``: ``(B, 3, H, W)``; by default ``(batch, 3, 224, 224)``.
    """
    # A bad shape fails before the build.
    shape = (batch, *DEFAULT_IMAGE_SHAPE) if input_shape is None else as_shape(input_shape)
    tv = require("torchvision", TORCHVISION_INSTALL)
    known = tv.models.list_models()
    if name not in known:
        raise unknown_name("torchvision model", name, known)
    label = f"torchvision {name}"
    model = seeded_build(seed, lambda: tv.models.get_model(name, weights=None, **kwargs), label)
    return Built(model, random_input(shape, seed), label)


def from_timm(
    name: str, input_shape: tuple[int, ...] | str | None = None, *, batch: int = 1, seed: int = 0, **kwargs: Any
) -> Built:
    """``timm.create_model(name, pretrained=False, **kwargs)`` and a pixel batch.

    ``input_shape``: ``(B, C, H, W)``; by default ``batch`` examples at the model's own input size.
    """
    given = None if input_shape is None else as_shape(input_shape)
    timm = require("timm", TIMM_INSTALL)
    if not timm.is_model(name):
        raise unknown_name("timm model", name, timm.list_models())
    label = f"timm {name}"
    model = seeded_build(seed, lambda: timm.create_model(name, pretrained=False, **kwargs), label)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    default = tuple(cfg.get("input_size", DEFAULT_IMAGE_SHAPE))
    return Built(model, random_input(given or (batch, *default), seed), label)
