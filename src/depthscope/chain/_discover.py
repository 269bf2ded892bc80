"""Cutting a module's forward into steps at given blocks, through hooks on one reference pass.

For a model whose blocks are called inside its own ``forward`` we cannot cut the forward into
pieces by reading code. Instead one reference forward pass records, through hooks, the arguments
each block receives; the stem is the model run until the first block is entered, each block is
called again with its recorded extra arguments (attention masks, position embeddings), and the
head is the model run with the last block's output replaced.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from depthscope._errors import ChainError, InputError, NoBlocksError
from depthscope.chain._repeat import check_steps_repeatable, fingerprints
from depthscope.chain._step import Step, run_step

# A chain built from hooks must reproduce the model's own output on the example input; the
# difference is pure re-evaluation noise, so a tolerance a little above float32 rounding suffices.
COMPOSITION_RTOL = 1e-4
COMPOSITION_ATOL = 1e-5
# A ModuleList shorter than this is more likely a pair of heads than a sequence of blocks.
MIN_BLOCKS = 2


class _StopForward(Exception):
    def __init__(self, state: torch.Tensor):
        self.state = state


def first_tensor(out: Any) -> torch.Tensor:
    """The hidden state in a block's or model's output (a tensor, a tuple, a dict-like output)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if hasattr(out, "values") and callable(out.values):  # Hugging Face ModelOutput and dicts
        for v in out.values():
            if isinstance(v, torch.Tensor):
                return v
    raise ChainError(f"cannot find a tensor in an output of type {type(out).__name__}")


def _replace_first(out: Any, value: torch.Tensor) -> Any:
    if isinstance(out, torch.Tensor):
        return value
    if isinstance(out, tuple):
        return (value, *out[1:])
    if isinstance(out, list):
        return [value, *out[1:]]
    raise ChainError(f"cannot replace the hidden state in a block output of type {type(out).__name__}")


def _state_arg(args: tuple, kwargs: dict) -> tuple[torch.Tensor, Callable[[torch.Tensor], tuple[tuple, dict]]]:
    """Split a block call into its hidden state and a function that rebuilds the call around a new one."""
    if args and isinstance(args[0], torch.Tensor):
        rest = args[1:]
        return args[0], lambda h: ((h, *rest), kwargs)
    for key in ("hidden_states", "x", "input", "src"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key], lambda h, key=key: (args, {**kwargs, key: h})
    raise ChainError("a block was called without a tensor as first argument or hidden_states= keyword")


def resolve_blocks(module: nn.Module, blocks: Sequence[str | nn.Module]) -> list[tuple[str, nn.Module]]:
    named = dict(module.named_modules())
    by_id = {id(m): n for n, m in named.items()}
    found: list[tuple[str, nn.Module]] = []
    for item in blocks:
        if isinstance(item, nn.Module):
            if id(item) not in by_id:
                raise ChainError(f"blocks= names a {type(item).__name__} that is not a submodule of the model")
            found.append((by_id[id(item)], item))
            continue
        # fnmatch's * also matches dots; a pattern names modules at its own nesting depth only.
        depth = item.count(".")
        matches = [(n, m) for n, m in named.items() if n and n.count(".") == depth and fnmatch.fnmatchcase(n, item)]
        if not matches:
            raise NoBlocksError(f"blocks= pattern {item!r} matches no submodule of {type(module).__name__}")
        found.extend(matches)
    return found


def longest_module_list(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    best: tuple[str, nn.ModuleList] | None = None
    for name, sub in module.named_modules():
        if isinstance(sub, nn.ModuleList) and len(sub) >= MIN_BLOCKS:
            if best is None or len(sub) > len(best[1]):
                best = (name, sub)
    if best is None:
        return None
    prefix = best[0] + "." if best[0] else ""
    return [(f"{prefix}{i}", m) for i, m in enumerate(best[1])]


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside the wrappers that compute the same function: ``torch.compile``'s
    ``OptimizedModule`` (its ``_orig_mod``), ``nn.DataParallel`` and ``DistributedDataParallel``
    (their ``module``), nested in any order.

    Raises:
        ChainError: a TorchScript module (``torch.jit.script`` or ``trace``), whose calls cannot be
            hooked or recorded.
    """
    # torch.compile's wrapper class lives in torch._dynamo, which is only imported once something
    # has been compiled: no compiled model exists before that, so there is nothing to import.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    while True:
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        elif eval_frame is not None and isinstance(module, eval_frame.OptimizedModule):
            module = module._orig_mod
        else:
            break
    if isinstance(module, torch.jit.ScriptModule):
        raise ChainError(
            f"{module.original_name} is a TorchScript module (torch.jit.script or torch.jit.trace): "
            "its blocks cannot be hooked or its operations recorded. Probe the nn.Module it was "
            "made from"
        )
    return module


def hooked_steps(module: nn.Module, blocks: list[tuple[str, nn.Module]], example: torch.Tensor) -> list[Step]:
    """The chain ``stem, blocks..., head`` of ``module`` cut at ``blocks``, bound to ``example``.

    One reference pass on ``example: (B, *S_0)`` records how each block is called and in which
    order: the steps follow that recorded order (not the order of ``blocks``), and candidates the
    forward never calls are dropped. The chain is then checked to compose to the model's output
    and each step to be repeatable (`check_steps_repeatable`).

    Raises:
        ChainError: a block called more than once, a block that does not receive what the one
            before returned, a chain that does not reproduce the model, a step that is not
            repeatable.
    """
    calls: dict[int, list[tuple[tuple, dict, Any]]] = {i: [] for i in range(len(blocks))}
    order: list[int] = []  # block indices in the order the forward first enters them
    handles = []
    for i, (_, block) in enumerate(blocks):

        def pre(mod, args, kwargs, i=i):
            if not calls[i]:
                order.append(i)
            calls[i].append((args, kwargs, None))

        def post(mod, args, kwargs, out, i=i):
            a, k, _ = calls[i][-1]
            calls[i][-1] = (a, k, out)

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            reference = first_tensor(module(example))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise InputError(f"{type(module).__name__} failed on an input of shape {tuple(example.shape)}: {err}") from err
    finally:
        for h in handles:
            h.remove()

    blocks = [blocks[i] for i in order]
    calls = {j: calls[i] for j, i in enumerate(order)}
    if not blocks:
        raise NoBlocksError(f"none of the blocks found in {type(module).__name__} is called by its forward")
    for i, (name, _) in enumerate(blocks):
        if len(calls[i]) != 1:
            raise ChainError(
                f"block {name!r} was called {len(calls[i])} times in one forward pass; a chain needs "
                "each block called exactly once (pass blocks= to choose others)"
            )
        try:
            _state_arg(*calls[i][0][:2])
        except ChainError as err:  # a DenseNet layer, called with a list of feature maps
            raise ChainError(f"block {name!r}: {err}; choose blocks that take the state as one tensor") from err
    for i in range(len(blocks) - 1):
        out_i = first_tensor(calls[i][0][2])
        in_next, _ = _state_arg(calls[i + 1][0][0], calls[i + 1][0][1])
        if out_i is not in_next and not (out_i.shape == in_next.shape and torch.equal(out_i, in_next)):
            raise ChainError(
                f"block {blocks[i + 1][0]!r} does not receive what block {blocks[i][0]!r} returned: the "
                "model does more between blocks than passing the state on (an outer skip connection, "
                "a concatenation). Wrap each block with its surroundings, or subclass ChainModule"
            )

    first_block = blocks[0][1]
    last_block = blocks[-1][1]

    def stem(x: torch.Tensor) -> torch.Tensor:
        def stop(mod, args, kwargs):
            raise _StopForward(_state_arg(args, kwargs)[0])

        handle = first_block.register_forward_pre_hook(stop, with_kwargs=True)
        try:
            module(x)
        except _StopForward as s:
            return s.state
        finally:
            handle.remove()
        raise ChainError(f"the first block {blocks[0][0]!r} was not called by the model's forward")

    def make_block(block: nn.Module, args: tuple, kwargs: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        _, rebuild = _state_arg(args, kwargs)

        def run(h: torch.Tensor) -> torch.Tensor:
            a, k = rebuild(h)
            return first_tensor(block(*a, **k))

        return run

    def head(h: torch.Tensor) -> torch.Tensor:
        def swap(mod, args, kwargs, out):
            return _replace_first(out, h)

        handle = last_block.register_forward_hook(swap, with_kwargs=True)
        try:
            return first_tensor(module(example))
        finally:
            handle.remove()

    steps = [Step("stem", stem, None)]
    steps += [Step(name, make_block(block, *calls[i][0][:2]), block) for i, (name, block) in enumerate(blocks)]
    steps.append(Step("head", head, None))

    # What each block is called with, keyed by its name so that a change names the block.
    call_args = {name: calls[i][0][:2] for i, (name, _) in enumerate(blocks)}
    recorded = fingerprints(call_args)
    with torch.no_grad():
        states = [example]
        for k, step in enumerate(steps):
            states.append(run_step(step, k, states[-1]))
    composed = states[-1]
    check_steps_repeatable(steps, states, recorded, call_args)
    if composed.shape != reference.shape or not torch.allclose(
        composed, reference, rtol=COMPOSITION_RTOL, atol=COMPOSITION_ATOL
    ):
        raise ChainError(
            f"the chain found in {type(module).__name__} does not reproduce the model's output; pass blocks= explicitly"
        )
    # The stem and head steps run the whole module; list it once so mode checks see every layer.
    return [Step(s.name, s.fn, module) if s.module is None else s for s in steps]
