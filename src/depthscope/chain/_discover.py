"""Cutting a module's forward into steps at given blocks, through hooks on one reference pass.

For a model whose blocks are called inside its own ``forward`` we cannot cut the forward into
pieces by reading code. Instead one reference forward pass records, through hooks, the arguments
each block receives; the stem is the model run until the first block is entered, each block is
called again with its recorded extra arguments (attention masks, position embeddings), and the
head is the model run with the last block's output replaced (and the blocks' outputs replayed from
the reference pass rather than recomputed).
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from depthscope._errors import ChainError, InputError, NoBlocksError
from depthscope.chain._repeat import check_steps_repeatable, fingerprints
from depthscope.chain._step import Step

# A ModuleList shorter than this is more likely a pair of heads than a sequence of blocks.
MIN_BLOCKS = 2


_NO_FORWARD = object()  # a module without an instance attribute "forward"


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
    forward never calls are dropped. Each step is then checked to return, called again on its
    state in that pass, the next state of the pass (`check_steps_repeatable`): the chain then
    reproduces the model, and no step changes between calls.

    Raises:
        ChainError: a block called more than once, a block that does not receive what the one
            before returned, a step that does not return what the reference pass computed.
    """
    calls: dict[int, list[tuple[tuple, dict, Any]]] = {i: [] for i in range(len(blocks))}
    order: list[int] = []  # block indices in the order the forward first enters them
    # Copies of each block's state in and out as the reference pass saw them: a later block may
    # update its input in place (an in-place ReLU first), which is the earlier block's output.
    seen_in: dict[int, torch.Tensor | None] = {}
    seen_out: dict[int, torch.Tensor | None] = {}
    handles = []
    for i, (_, block) in enumerate(blocks):

        def pre(mod, args, kwargs, i=i):
            if not calls[i]:
                order.append(i)
                seen_in[i] = _copy(lambda: _state_arg(args, kwargs)[0])
            calls[i].append((args, kwargs, None))

        def post(mod, args, kwargs, out, i=i):
            a, k, _ = calls[i][-1]
            calls[i][-1] = (a, k, out)
            seen_out.setdefault(i, _copy(lambda: first_tensor(out)))

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

    # The head runs the model on the example with the last block's output swapped for h. The
    # blocks' outputs there do not depend on h, so they are replayed from the reference pass
    # instead of recomputed: only the stem and the tail run (a full forward of resnet18 per head
    # call before). A model whose tail reads something the blocks' forwards leave behind (a log
    # they write) is not reproduced with the replay: the check of the steps below sees that, and
    # its head then runs the blocks.
    outputs = [calls[i][0][2] for i in range(len(blocks))]
    replay = [True]

    def head(h: torch.Tensor) -> torch.Tensor:
        def swap(mod, args, kwargs, out):
            return _replace_first(out, h)

        handle = last_block.register_forward_hook(swap, with_kwargs=True)
        try:
            with _replaying([b for _, b in blocks], outputs) if replay[0] else nullcontext():
                return first_tensor(module(example))
        finally:
            handle.remove()

    steps = [Step("stem", stem, None)]
    steps += [Step(name, make_block(block, *calls[i][0][:2]), block) for i, (name, block) in enumerate(blocks)]
    steps.append(Step("head", head, None))

    # What each block is called with, keyed by its name so that a change names the block.
    call_args = {name: calls[i][0][:2] for i, (name, _) in enumerate(blocks)}
    recorded = fingerprints(call_args)
    # Each step called on the state it had in the reference pass must return the next state of
    # that pass: the steps then compose to the model, and a step that changes from call to call
    # (a growing key/value cache) is caught, in one call of each step.
    states = [example, seen_in[order[0]], *(seen_out[i] for i in order), reference]
    try:
        check_steps_repeatable(steps, states, recorded, call_args)
    except ChainError:
        if not replay[0]:
            raise
        replay[0] = False  # the head runs the blocks: checked again
        check_steps_repeatable(steps, states, recorded, call_args)
    # The stem and head steps run the whole module; list it once so mode checks see every layer.
    return [Step(s.name, s.fn, module) if s.module is None else s for s in steps]


def _copy(get: Callable[[], torch.Tensor]) -> torch.Tensor | None:
    """A detached copy of ``get()``, or None where there is no single tensor to copy (checked later)."""
    try:
        return get().detach().clone()
    except ChainError:
        return None


def _fresh(out: Any) -> Any:
    """A recorded block output with its tensors copied (tuples, lists and dicts rebuilt), so that
    the model may update what it gets in place without changing the record."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if type(out) in (tuple, list):
        return type(out)(_fresh(v) for v in out)
    if type(out) is dict:
        return {k: _fresh(v) for k, v in out.items()}
    return out


@contextmanager
def _replaying(modules: Sequence[nn.Module], outputs: Sequence[Any]) -> Iterator[None]:
    """Within the block, each of ``modules`` returns a copy of its recorded output instead of
    running (its hooks still run); an instance attribute ``forward`` set by others is restored."""
    saved = [m.__dict__.get("forward", _NO_FORWARD) for m in modules]
    try:
        for m, out in zip(modules, outputs):
            m.forward = lambda *args, _out=out, **kwargs: _fresh(_out)
        yield
    finally:
        for m, f in zip(modules, saved):
            if f is _NO_FORWARD:
                m.__dict__.pop("forward", None)
            else:
                m.forward = f
