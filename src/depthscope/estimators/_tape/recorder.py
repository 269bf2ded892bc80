"""Recording a step: a ``TorchFunctionMode`` that linearises every call on a tracked tensor.

The step's input is node 0. Each call that reads a tracked tensor is looked up in `rules.RULES`;
its output becomes a new tracked node and the call an `Op`. The first call the recorder cannot
linearise (no rule, a rule that raises, several outputs, dropout in training) sets ``failure``,
after which the step runs on unrecorded and `record` returns no tape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from depthscope.estimators._tape.arithmetic import product_rule
from depthscope.estimators._tape.calls import arg, name
from depthscope.estimators._tape.fusion import fuse_scales
from depthscope.estimators._tape.linearization import Linearization, Op, Unsupported
from depthscope.estimators._tape.replay import LinearTape
from depthscope.estimators._tape.rules import (
    ANY_POSITION,
    BEFORE_CALL,
    CONSTANT,
    DECOMPOSE,
    DROPOUT,
    RULES,
    SPLIT_RULES,
)

Tensor = torch.Tensor
# What a rule raises on a call it cannot linearise (besides `Unsupported`, torch's own complaints
# about the arguments it inspects): the step then records no tape and keeps the autograd route.
_RULE_ERRORS = (Unsupported, RuntimeError, TypeError, ValueError, IndexError)


class _Recorder(TorchFunctionMode):
    """Records the linearisation of every call that touches a tracked tensor."""

    def __init__(self, x: Tensor):
        super().__init__()
        self.ids: dict[int, int] = {id(x): 0}
        self.alive: list[Tensor] = [x]  # keeps every tracked tensor (and so its id) alive
        self.ops: list[Op] = []
        self.keys: list[tuple] = []
        self.failure: str | None = None
        self.constants: dict[int, int] = {}  # storage address -> bytes of the untracked tensors read

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.failure is not None:
            return func(*args, **kwargs)
        flat = _leaves(args, kwargs)
        ins = tuple(self.ids[id(a)] for a in flat if isinstance(a, Tensor) and id(a) in self.ids)
        if not ins:
            return func(*args, **kwargs)
        if func in DECOMPOSE:
            with self:  # re-entered past this call's own dispatch: its parts are recorded one by one
                return torch.overrides.redispatch_function(func, types, args, kwargs)
        if func in DROPOUT:
            out = func(*args, **kwargs)
            if arg(args, kwargs, 2, "training", True) and arg(args, kwargs, 1, "p", 0.5) > 0:
                self.failure = "dropout in training mode"
            else:
                self._record(
                    ins[:1], out, Linearization(lambda ts: ts[0], lambda u: [u]), self._key(func, flat, out), []
                )
            return out
        rule = RULES.get(func)
        tracked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and id(a) in self.ids]
        if rule is not None and rule not in ANY_POSITION and len(tracked) != len(ins):
            self.failure = f"{name(func)} takes a tracked tensor by keyword"
        linear = None
        if self.failure is None and rule in BEFORE_CALL:
            shape = None
            if rule is product_rule:
                shape = _Shape(torch.broadcast_shapes(*(a.shape for a in args[:2] if isinstance(a, Tensor))))
            linear = self._linearise(rule, func, args, kwargs, shape, tracked)
        out = func(*args, **kwargs)
        if self.failure is not None:
            return out
        if not isinstance(out, Tensor):
            if func in SPLIT_RULES and all(isinstance(o, Tensor) for o in out):
                self._record_pieces(func, args, kwargs, out, tracked, ins, flat)
                return out
            if isinstance(out, (tuple, list)) and any(isinstance(o, Tensor) and o.is_floating_point() for o in out):
                self.failure = f"{name(func)} returns several tensors"
            return out
        if not out.is_floating_point() or func in CONSTANT:
            return out
        if rule is None:
            self.failure = f"{name(func)} has no linearisation rule"
            return out
        if linear is None:
            linear = self._linearise(rule, func, args, kwargs, out, tracked)
        if linear is not None:
            self._record(ins, out, linear, self._key(func, flat, out), flat)
        return out

    def _key(self, func, flat: list, out: Tensor) -> tuple:
        """The call's part of the tape's signature."""
        return (func, tuple(_describe(a, self.ids) for a in flat), tuple(out.shape))

    def _linearise(self, rule, func, args, kwargs, out, tracked):
        try:
            return rule(func, args, kwargs, out, tracked, self.ids)
        except _RULE_ERRORS as err:
            self.failure = f"{name(func)}: {err}"
            return None

    def _record_pieces(self, func, args, kwargs, outs, tracked, ins, flat) -> None:
        """Record each piece of a split as its own node."""
        try:
            pieces = SPLIT_RULES[func](func, args, kwargs, outs, tracked)
        except _RULE_ERRORS as err:
            self.failure = f"{name(func)}: {err}"
            return
        for o, linear in zip(outs, pieces):
            self._record(ins, o, linear, self._key(func, flat, o), flat)

    def _record(self, ins: tuple[int, ...], out: Tensor, linear: Linearization, key: tuple, flat: list) -> None:
        # The constants the linearisation may read (weights, statistics, masks' sources), each
        # storage once; a tensor without one (sparse, meta) is not counted.
        for a in flat:
            if (
                isinstance(a, Tensor)
                and id(a) not in self.ids
                and a.layout == torch.strided
                and a.device.type != "meta"
            ):
                storage = a.untyped_storage()
                self.constants[storage.data_ptr()] = storage.nbytes()
        idx = len(self.alive)
        self.alive.append(out)
        self.ids[id(out)] = idx
        self.ops.append(Op(ins, idx, linear))
        self.keys.append(key)


_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout)


def _describe(a: Any, ids: dict[int, int]) -> Any:
    """An argument as the rules see its structure: a tensor by shape, dtype, strides and (if
    tracked) node; a plain value as itself; anything else by its type."""
    if isinstance(a, Tensor):
        return (tuple(a.shape), a.dtype, a.stride(), ids.get(id(a)))
    return a if isinstance(a, _PLAIN) else type(a).__qualname__


def _leaves(args: tuple, kwargs: dict) -> list:
    """The arguments' leaves in pytree order (`torch.utils._pytree.tree_leaves`), fast for the flat
    or one-level lists that torch calls take."""
    out = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, (list, tuple)):
            if any(isinstance(b, (list, tuple, dict)) for b in a):
                return torch.utils._pytree.tree_leaves((args, kwargs))
            out.extend(a)
        elif isinstance(a, dict):
            return torch.utils._pytree.tree_leaves((args, kwargs))
        else:
            out.append(a)
    return out


class _Shape:
    """Stands in for the output when a rule runs before the call: only its shape is known."""

    def __init__(self, shape: torch.Size):
        self.shape, self.ndim = shape, len(shape)


def record(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, LinearTape | None, str | None]:
    """Run ``y = fn(x)`` and record its linearisation.

    Returns ``(y, tape, None)``, or ``(y, None, reason)`` when some call has no rule. Autograd
    state is untouched: ``y`` has the graph it would have without recording.
    """
    rec = _Recorder(x)
    with rec:
        y = fn(x)
    if rec.failure is not None:
        return y, None, rec.failure
    if not isinstance(y, Tensor) or id(y) not in rec.ids:
        return y, None, "the output does not depend on the input through recorded calls"
    out_node = rec.ids[id(y)]
    ops = fuse_scales(rec.ops, out_node)
    node_bytes = sum(t.numel() * t.element_size() for t in rec.alive)
    tape = LinearTape(
        x.shape, y.shape, ops, out_node, len(rec.alive), tuple(rec.keys), sum(rec.constants.values()), node_bytes
    )
    return y, tape, None
