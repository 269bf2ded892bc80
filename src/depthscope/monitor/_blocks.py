"""Which modules the monitor taps: the blocks the probe finds, without the stem and the head.

The probe's chain (`Chain.from_module`) runs from the input through a stem, the blocks and a head.
The monitor taps the blocks between: the stem's output gradient is the first block's input
gradient, and the head's is the loss's own gradient, so the blocks are where depth lives. Wrappers
are looked through here, not in the chain, so that the example forward never runs through a
``DistributedDataParallel`` (whose forward takes part in collective communication).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from depthscope._errors import ChainError, NoBlocksError
from depthscope.chain import Chain

# Chain steps that are not blocks, by name: the same names the probe treats as stem and head.
STEM_NAMES = frozenset({"stem"})
HEAD_NAMES = frozenset({"head", "readout"})


@dataclass(frozen=True)
class Found:
    """The model as the monitor sees it.

    Attributes:
        root: the module that computes the model's function (wrappers removed).
        names, modules: the K blocks in depth order.
        wrapped: "ddp", "dp", "compiled" or "" (what ``root`` was taken out of).
    """

    root: nn.Module
    names: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    wrapped: str


def unwrap(model: nn.Module) -> tuple[nn.Module, str]:
    """The module inside DistributedDataParallel, DataParallel or a ``torch.compile`` wrapper."""
    wrapped = ""
    for _ in range(3):  # compile(DDP(model)) nests two wrappers; three is plenty
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            wrapped = wrapped or ("ddp" if isinstance(model, nn.parallel.DistributedDataParallel) else "dp")
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            wrapped = wrapped or "compiled"
            model = model._orig_mod
        else:
            break
    return model, wrapped


@contextmanager
def eval_forked(root: nn.Module, devices: Sequence[int] = ()) -> Iterator[None]:
    """``root`` in eval mode under a forked random state (CPU and ``devices``) for the duration;
    every module's own mode is restored after, so a pass of the monitor's changes nothing in training."""
    modes = {m: m.training for m in root.modules()}
    try:
        root.eval()
        with torch.random.fork_rng(devices=list(devices)):
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def find_blocks(model: nn.Module, example: torch.Tensor | None, blocks: Sequence[str | nn.Module] | None) -> Found:
    """The blocks of ``model`` as `Chain.from_module` finds them, stem and head left out.

    The example forward runs under `eval_forked` (dropout off, batch-norm statistics untouched), so
    finding the blocks changes nothing in training.

    Raises:
        NoBlocksError: no block sequence, or only a stem and a head.
        ChainError: the chain could not be built; says to pass ``example=``.
    """
    root, wrapped = unwrap(model)
    try:
        with eval_forked(root):
            chain = Chain.from_module(root, blocks, example=example)
    except NoBlocksError:
        raise
    except ChainError as err:
        if example is None:
            raise ChainError(f"{err} (Monitor: pass example= or probe_input=, a small input batch)") from err
        raise
    names: list[str] = []
    modules: list[nn.Module] = []
    seen: set[int] = set()
    for step in chain:
        m = step.module
        if m is None or m is root or step.name in STEM_NAMES or step.name in HEAD_NAMES or id(m) in seen:
            continue  # a module run at several steps (weight tying) is one block; its calls add up
        seen.add(id(m))
        names.append(step.name)
        modules.append(m)
    if not modules:
        raise NoBlocksError(
            f"no blocks to monitor in {type(root).__name__}: its chain has only {chain.names}; "
            "pass blocks= (submodule names or glob patterns such as 'layers.*')"
        )
    return Found(root, tuple(names), tuple(modules), wrapped)
