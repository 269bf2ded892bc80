"""Which steps a module is cut into: explicit blocks, a ChainModule, a registered adapter, a
Sequential, or the generic search over nested containers.

The registry `ADAPTERS` is tried in order; the first adapter that recognises the model cuts it.
`register_adapter` puts a new adapter ahead of the built-in ones. An attention mask is bound by
the adapter (`Adapter.prepare`), or, for explicit blocks and the generic search, by calling the
module with it (`_WithAttentionMask`); models that take none refuse it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from depthscope._errors import ChainError, InputError, NoBlocksError
from depthscope.chain._adapters import Adapter
from depthscope.chain._discover import MIN_BLOCKS, hooked_steps, resolve_blocks, unwrap
from depthscope.chain._hf import HFAdapter
from depthscope.chain._libraries import LIBRARY_ADAPTERS
from depthscope.chain._module import ChainModule
from depthscope.chain._step import Step

ADAPTERS: list[Adapter] = [HFAdapter(), *LIBRARY_ADAPTERS]
# The generic search tries this many candidate block lists (longest first) before giving up: each
# try costs about two forward passes of the model (the reference pass and the check of the steps).
MAX_GENERIC_TRIES = 4


def register_adapter(adapter: Adapter) -> None:
    """Try ``adapter`` before every adapter registered so far (a user's own library)."""
    ADAPTERS.insert(0, adapter)


def find_adapter(model: nn.Module) -> Adapter | None:
    """The first registered adapter that recognises ``model``, or None."""
    return next((a for a in ADAPTERS if a.recognises(model)), None)


def steps_from_module(
    module: nn.Module,
    blocks: Sequence[str | nn.Module] | None,
    example: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
) -> list[Step]:
    """The steps of ``module``'s chain (stem and head included); `Chain.from_module` documents the search."""
    module = unwrap(module)
    if blocks is None and isinstance(module, ChainModule):
        _refuse_mask(attention_mask, f"{type(module).__name__} is a ChainModule, whose steps take one tensor")
        return [Step(name, fn, fn if isinstance(fn, nn.Module) else None) for name, fn in module.chain_steps(example)]
    # An adapter also prepares a model whose blocks are given (a Hugging Face model's caches are
    # switched off either way); it chooses the blocks only when none are given.
    adapter = find_adapter(module)
    if blocks is None and adapter is None and isinstance(module, nn.Sequential):
        if len(module) == 0:
            raise NoBlocksError("the nn.Sequential is empty: there are no blocks to probe")
        _refuse_mask(attention_mask, "an nn.Sequential passes one tensor from child to child")
        return [Step(name, child, child) for name, child in module.named_children()]
    if example is None:
        raise ChainError(
            f"{type(module).__name__} calls its blocks inside its own forward; pass example=x so one "
            "reference pass can record how each block is called (the chain is then bound to x)"
        )
    if adapter is not None:
        prepared = adapter.prepare(module, example, attention_mask)
        if blocks is not None:  # named by their paths in the module itself, run through the prepared one
            return hooked_steps(prepared, resolve_blocks(module, blocks), example)
        found = adapter.blocks(prepared)
        if not found:
            raise NoBlocksError(f"the {adapter.name} adapter found no blocks in {type(module).__name__}")
        return hooked_steps(prepared, found, example)
    # Blocks are named by their paths in the module itself; the mask only changes how it is called.
    runner = module if attention_mask is None else _WithAttentionMask(module, attention_mask)
    if blocks is not None:
        return hooked_steps(runner, resolve_blocks(module, blocks), example)
    return _generic(module, runner, example)


def _refuse_mask(attention_mask: torch.Tensor | None, why: str) -> None:
    if attention_mask is not None:
        raise InputError(f"attention_mask cannot be passed: {why}")


class _WithAttentionMask(nn.Module):
    """``x -> model(x, attention_mask=attention_mask)``: a module whose forward takes a mask, bound to one."""

    def __init__(self, model: nn.Module, attention_mask: torch.Tensor):
        super().__init__()
        if "attention_mask" not in inspect.signature(model.forward).parameters:
            raise InputError(
                f"{type(model).__name__}.forward takes no attention_mask argument (it takes "
                f"{', '.join(inspect.signature(model.forward).parameters) or 'nothing'}); probe it without one"
            )
        self.model = model
        self.attention_mask = attention_mask

    def forward(self, x: torch.Tensor) -> object:
        return self.model(x, attention_mask=self.attention_mask)


def nested_candidates(module: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """Candidate block lists, most steps first: each ``nn.Sequential`` or ``nn.ModuleList`` below
    the root with at least ``MIN_BLOCKS`` children, its children that are stages opened into
    their children. A stage is a plain Sequential or ModuleList of composite modules (a stage of
    residual blocks); a plain Sequential of layers (``Linear, Tanh``) is a block and stays whole."""

    def is_stage(m: nn.Module) -> bool:
        return (
            type(m) in (nn.Sequential, nn.ModuleList)
            and len(m) > 0
            and all(next(c.children(), None) is not None for c in m.children())
        )

    def opened(prefix: str, container: nn.Module) -> list[tuple[str, nn.Module]]:
        out = []
        for name, child in container.named_children():
            if is_stage(child):
                out += opened(f"{prefix}{name}.", child)
            else:
                out.append((f"{prefix}{name}", child))
        return out

    found = []
    for name, sub in module.named_modules():
        if name and isinstance(sub, (nn.Sequential, nn.ModuleList)) and len(sub) >= MIN_BLOCKS:
            found.append((name, opened(name + ".", sub)))
    # Stable: of two candidates with as many steps (a stage and its only child), the outer first.
    found.sort(key=lambda c: -len(c[1]))
    return found


def _generic(module: nn.Module, runner: nn.Module, example: torch.Tensor) -> list[Step]:
    """The generic search over ``module``'s containers; ``runner`` is the module called (``module``, or
    it with its attention mask bound)."""
    candidates = nested_candidates(module)
    if not candidates:
        raise NoBlocksError(
            f"no blocks found in {type(module).__name__}: looked for a depthscope ChainModule, a registered "
            f"adapter that recognises it (depthscope.chain.ADAPTERS), an nn.Sequential, and nn.Sequentials "
            f"or nn.ModuleLists of at least {MIN_BLOCKS} blocks inside it. Pass blocks=[submodule names or "
            "glob patterns], e.g. blocks=['layer1.*', 'layer2.*']"
        )
    failures, errors = [], []
    for name, found in candidates[:MAX_GENERIC_TRIES]:
        try:
            return hooked_steps(runner, found, example)
        except ChainError as err:
            errors.append(err)
            failures.append(f"{name!r} ({len(found)} blocks): {err}")
    if len(errors) == 1:
        raise errors[0]
    tried = "\n  ".join(failures)
    raise NoBlocksError(
        f"cannot decide the blocks of {type(module).__name__}: no registered adapter recognises it, and "
        f"none of its candidate block lists gives a chain that reproduces the model:\n  {tried}\n"
        "Pass blocks=[submodule names or glob patterns] naming the blocks in the order they run"
    )
