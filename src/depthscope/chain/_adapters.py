"""Adapters: how a library's models are cut into stem, blocks and head.

An `Adapter` declares which models it recognises and which of their submodules are the steps
between stem and head; `hooked_steps` then records how the forward calls them (in which order,
with which extra arguments), so the stem is the model up to the first step and the head the model
after the last. `LibraryAdapter` covers the common case, a library whose residual blocks are
instances of a few classes nested in stages (torchvision's and timm's CNNs and ViTs). The
registry itself (which adapters are tried, in which order) is `depthscope.chain._find.ADAPTERS`.

How to write an adapter (the contract):

1. ``recognises(model)`` is True for the models it knows, and never imports a library: a model
   of a library exists only once the library is imported, so it looks in ``sys.modules``.
2. ``prepare(model, example, attention_mask)`` returns the module whose forward the chain cuts
   (default: the model itself; Hugging Face wraps its base model to switch caches off). An
   adapter whose models take an attention mask binds ``attention_mask`` (a tensor, or None for
   none) into that module; the default refuses one (`InputError`).
3. ``blocks(module)`` returns ``(name, submodule)`` pairs, any order (execution order is
   recorded): the residual blocks and whatever sits between them (downsampling, transitions,
   patch merging), so that each one receives what the one before returned.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from depthscope._errors import InputError


class Adapter(abc.ABC):
    """A rule that recognises some models and names their steps (see the module's contract)."""

    name: str

    @abc.abstractmethod
    def recognises(self, model: nn.Module) -> bool:
        """Whether this adapter knows ``model``."""

    def prepare(self, model: nn.Module, example: torch.Tensor, attention_mask: torch.Tensor | None = None) -> nn.Module:
        """The module whose forward is cut into steps (``example: (B, *S_0)``), ``attention_mask``
        bound; this default binds none and refuses one."""
        if attention_mask is not None:
            raise InputError(
                f"the {self.name} adapter passes no attention_mask to {type(model).__name__}: its models take "
                "none. Probe it without one"
            )
        return model

    @abc.abstractmethod
    def blocks(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        """The submodules that become steps between stem and head, named by path."""


def loaded_class(path: str) -> type | None:
    """The class ``"package.module:Class"`` if its module is already imported, else None."""
    module_name, _, class_name = path.partition(":")
    module = sys.modules.get(module_name)
    return getattr(module, class_name, None) if module is not None else None


def _classes(paths: tuple[str, ...]) -> tuple[type, ...]:
    return tuple(c for c in (loaded_class(p) for p in paths) if c is not None)


def stage_blocks(model: nn.Module, is_block: Callable[[nn.Module], bool]) -> list[tuple[str, nn.Module]]:
    """The blocks of ``model`` and the modules between them, in registration order.

    Children that are blocks are kept whole; children that contain blocks (stages, encoders) are
    opened; other children are kept as steps if they sit between two blocks (a stage's
    downsampling, a DenseNet transition, Swin's patch merging) and left to the stem or head
    otherwise. ``nn.Identity`` children (an absent downsampling) are skipped.
    """
    # The paths of the modules that hold a block: every proper prefix of a block's path.
    holders = set()
    for path, m in model.named_modules():
        if path and is_block(m):
            parts = path.split(".")
            holders.update(".".join(parts[:i]) for i in range(1, len(parts)))
    leaves: list[tuple[str, nn.Module, bool]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = prefix + name
            if is_block(child):
                leaves.append((path, child, True))
            elif path in holders:
                visit(path + ".", child)
            elif not isinstance(child, nn.Identity):
                leaves.append((path, child, False))

    visit("", model)
    at = [i for i, (_, _, block) in enumerate(leaves) if block]
    if not at:
        return []
    return [(name, m) for name, m, _ in leaves[at[0] : at[-1] + 1]]


@dataclass(frozen=True)
class LibraryAdapter(Adapter):
    """Models of the classes ``models``, whose blocks are the instances of ``block_classes``.

    Classes are written ``"package.module:Class"`` and resolved only when that module is loaded,
    so depthscope imports no vision library itself.
    """

    name: str
    models: tuple[str, ...]
    block_classes: tuple[str, ...]

    def recognises(self, model: nn.Module) -> bool:
        classes = _classes(self.models)
        return bool(classes) and isinstance(model, classes)

    def blocks(self, module: nn.Module) -> list[tuple[str, nn.Module]]:
        classes = _classes(self.block_classes)
        return stage_blocks(module, lambda m: isinstance(m, classes))
