"""Where a model's blocks are and how a copy of the model is edited: blocks inserted, blocks removed.

The blocks are the steps of the chain the probe measures (`depthscope.chain.Chain.from_module`),
stem and head left out; each step's ``module`` is found in ``model.named_modules()`` by identity,
which gives its dotted path. A block can be inserted after, or removed from, a position of an
``nn.Sequential`` or ``nn.ModuleList`` (the containers every zoo model, torchvision's ResNets and
most hand-written models keep their blocks in); the container is rebuilt in a deep copy. A block
held in a plain attribute cannot have a neighbour inserted; it can be removed (replaced by
``nn.Identity``). The original model is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from depthscope._errors import ChainError, InputError
from depthscope.chain import Chain, ChainModule
from depthscope.doctor import module_path, skip_of

# Examples drawn from a zoo model's ``example_input`` when no input is given; a handful is enough
# to find the blocks and their shapes.
EXAMPLE_BATCH = 4
# Names the chain adapters give the steps before and after the blocks.
STEM, HEAD = "stem", "head"
# The containers whose children a copy can rebuild with a block more or less.
EDITABLE = (nn.Sequential, nn.ModuleList)


@dataclass(frozen=True)
class Site:
    """One block of a model.

    Attributes:
        name: the chain step's name (``"blocks.3"``).
        index: its position in the chain (0 is the stem).
        module: the block.
        path: its dotted path in the model (``model.get_submodule(path) is module``).
        in_shape, out_shape: per-example state shapes before and after it.
        skip: it adds its input to a branch (a residual block); None when that could not be told.
    """

    name: str
    index: int
    module: nn.Module
    path: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    skip: bool | None

    @property
    def shape_preserving(self) -> bool:
        return self.in_shape == self.out_shape

    @property
    def residual(self) -> bool:
        """A shape-preserving block with a skip connection: removing it leaves the skip, x -> x."""
        return bool(self.skip) and self.shape_preserving


@dataclass(frozen=True)
class Layout:
    """A model's chain at an input, its states and its blocks (`Site`)."""

    chain: Chain
    states: list[torch.Tensor]
    sites: list[Site]

    def names(self) -> list[str]:
        return [s.name for s in self.sites]

    def find(self, name: str) -> Site:
        """The block whose step name (or module path) is ``name``.

        Raises:
            InputError: no such block; the message lists the block names.
        """
        for s in self.sites:
            if name in (s.name, s.path):
                return s
        raise InputError(f"no block named {name!r}; the blocks are: {', '.join(self.names()) or '(none)'}")


def model_input(model: nn.Module, x: torch.Tensor | None, seed: int = 0) -> torch.Tensor:
    """``x``, or a zoo model's own example batch (``EXAMPLE_BATCH`` examples) when ``x`` is None.

    Raises:
        InputError: no ``x`` for a model that cannot make its own input.
    """
    if x is not None:
        return x
    if isinstance(model, ChainModule):
        return model.example_input(EXAMPLE_BATCH, torch.Generator().manual_seed(seed))
    raise InputError(
        f"an input batch x is needed to find the blocks of a {type(model).__name__} (only zoo models make their own)"
    )


@torch.no_grad()
def layout(model: nn.Module, x: torch.Tensor) -> Layout:
    """The chain of an eval-mode copy of ``model`` at ``x`` (B, *S_0), its states and its blocks (every
    step but stem and head that has a module). The sites' modules belong to the copy (running a
    train-mode BatchNorm would change the original's statistics); their paths hold in both."""
    model = copy.deepcopy(model).eval()
    chain = Chain.from_module(model, None, example=x)
    states = chain.states(x)
    sites = []
    for k, step in enumerate(chain.steps):
        if step.module is None or step.module is model or step.name in (STEM, HEAD):
            continue
        in_shape, out_shape = tuple(states[k].shape[1:]), tuple(states[k + 1].shape[1:])
        sites.append(
            Site(
                step.name,
                k,
                step.module,
                module_path(model, step.module),
                in_shape,
                out_shape,
                skip_of(step.module, in_shape),
            )
        )
    return Layout(chain, states, sites)


def _split(path: str) -> tuple[str, str]:
    parent, _, key = path.rpartition(".")
    return parent, key


def _container(model: nn.Module, path: str) -> nn.Module | None:
    """The parent of ``path`` when it is an editable container with integer keys, else None."""
    parent_path, _ = _split(path)
    parent = model.get_submodule(parent_path)  # "" is the model itself
    if type(parent) not in EDITABLE:
        return None
    if not all(k.isdigit() for k, _ in parent.named_children()):
        return None
    return parent


def edited_copy(
    model: nn.Module, after: Mapping[str, Sequence[nn.Module]] | None = None, remove: Sequence[str] = ()
) -> nn.Module:
    """A deep copy of ``model`` with ``after[path]`` inserted right after the block at ``path`` and the
    blocks at ``remove`` taken out. The new modules are inserted as given (copy them first if they
    must not be shared).

    Raises:
        ChainError: an insertion point that is not in an ``nn.Sequential`` or ``nn.ModuleList``.
    """
    after = dict(after or {})
    for path in after:
        if _container(model, path) is None:
            parent_path, _ = _split(path)
            where = type(model.get_submodule(parent_path)).__name__ if parent_path else type(model).__name__
            raise ChainError(
                f"cannot insert a block after {path!r}: it is held by a {where}, not by an nn.Sequential or "
                "nn.ModuleList with numbered children, so depthscope cannot rebuild its container"
            )
    new = copy.deepcopy(model)
    groups: dict[str, dict[str, tuple[list[nn.Module], bool]]] = {}
    for path in set(after) | set(remove):
        parent_path, key = _split(path)
        if _container(model, path) is None:  # a removal outside a container: the block becomes the identity
            new.set_submodule(path, nn.Identity())
            continue
        groups.setdefault(parent_path, {})[key] = (list(after.get(path, ())), path in remove)
    # deepest containers first, the model itself (path "") last: rebuilding a container replaces it
    for parent_path in sorted(groups, key=lambda p: -len(p)):
        edits = groups[parent_path]
        parent = new.get_submodule(parent_path)
        children: list[nn.Module] = []
        # by key, in order, shared modules included (``children()`` would skip a repeated one)
        for key, child in parent._modules.items():
            inserted, dropped = edits.get(key, ([], False))
            children += ([] if dropped else [child]) + inserted
        rebuilt = nn.Sequential(*children) if type(parent) is nn.Sequential else nn.ModuleList(children)
        if not parent_path:
            return rebuilt
        new.set_submodule(parent_path, rebuilt)
    return new
