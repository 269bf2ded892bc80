"""The model registry: ``register_model``, ``create_model``, ``list_models``.

Each family module registers its factories under a name with their defaults and a ``tiny`` set of
keyword arguments; conformance tests build every registered model at its tiny size, so a new
entry is tested for free.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from depthscope._errors import UnknownModelError
from depthscope.chain import ChainModule


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: registry key, e.g. ``"resnet_mlp"``.
        factory: ``factory(**kwargs) -> ChainModule``.
        family: the zoo file it comes from (``"mlp"``, ``"transformer"``, ...).
        description: one line for ``depthscope models``.
        tiny: keyword arguments giving a small instance (conformance tests, quick probes).
    """

    name: str
    factory: Callable[..., ChainModule]
    family: str
    description: str
    tiny: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, family: str, description: str, tiny: dict[str, Any] | None = None
) -> Callable[[Callable[..., ChainModule]], Callable[..., ChainModule]]:
    """Decorator registering a model factory under ``name``."""

    def decorate(factory: Callable[..., ChainModule]) -> Callable[..., ChainModule]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, factory, family, description, dict(tiny or {}))
        return factory

    return decorate


def model_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; raises UnknownModelError with the closest names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (see depthscope.list_models())") from None


def create_model(name: str, **kwargs: Any) -> ChainModule:
    """Build the registered model ``name``; ``kwargs`` override its defaults."""
    return model_spec(name).factory(**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))
