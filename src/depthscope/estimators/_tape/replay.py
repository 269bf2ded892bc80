"""`LinearTape`: replaying a step's recorded operations on batches of tangents (J v) and
cotangents (J^T u).

The replay follows the recorded `Op`s forward for J v and backward for J^T u, keeping one tensor
per node. It overwrites a node's tensor in place (`Linearization.jvp_inplace` / ``vjp_inplace``)
only where the replay allocated that tensor itself and no other operation reads it, so the
caller's tensors are never written.
"""

from __future__ import annotations

import torch

from depthscope.estimators._tape.linearization import Op

Tensor = torch.Tensor


class LinearTape:
    """The recorded linearisation of one step.

    Attributes:
        in_shape, out_shape: the step's input and output shapes (batch included).
        ops: the recorded operations, in execution order.
        signature: what the tape's code path depends on: each recorded call's function, its
            arguments' shapes, dtypes and non-tensor values, and which tensors were tracked. Two
            tapes with one signature replay through the same rules on the same shapes; only the
            constants (weights, ReLU masks) differ.
        constant_bytes: bytes of the tensors the recorded calls read besides the tracked ones
            (weights, normalisation statistics), each storage counted once.
        node_bytes: bytes of the recorded states (the input, every tracked intermediate): one
            tangent pushed through the tape touches about this much per replay.
    """

    def __init__(
        self,
        in_shape: torch.Size,
        out_shape: torch.Size,
        ops: list[Op],
        out_node: int,
        n_nodes: int,
        signature: tuple = (),
        constant_bytes: int = 0,
        node_bytes: int = 0,
    ):
        self.in_shape, self.out_shape = in_shape, out_shape
        self.constant_bytes, self.node_bytes = constant_bytes, node_bytes
        self.ops, self.out_node, self.n_nodes = ops, out_node, n_nodes
        # How many ops read each node (the output counts as read by the caller): a tangent read
        # once, and allocated by the replay itself, may be overwritten by the op that reads it.
        self._uses = [0] * n_nodes
        self._uses[out_node] += 1
        for op in ops:
            for i in op.ins:
                self._uses[i] += 1
        self.signature = (tuple(in_shape), tuple(out_shape), out_node, signature)

    def working_set(self, tangents: int) -> int:
        """Bytes one replay of ``tangents`` tangents reads and writes, roughly: the constants and
        a tangent per recorded state."""
        return self.constant_bytes + tangents * self.node_bytes

    def jvp(self, v: Tensor) -> Tensor:
        """J v for tangents ``v: (P, *in_shape)``; returns ``(P, *out_shape)``."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.jvp(v)
        tangents: list[Tensor | None] = [None] * self.n_nodes
        owned = [False] * self.n_nodes  # the node's tensor was allocated by this replay
        tangents[0] = v
        uses = self._uses
        for op in self.ops:
            lin = op.linear
            ts = [tangents[i] for i in op.ins]
            inplace = lin.jvp_inplace
            first = op.ins[0]
            out = None
            if inplace is not None and owned[first] and uses[first] == 1:
                out = inplace(ts)  # None where shapes or dtypes forbid it
            if out is not None:
                owned[op.out] = True
            else:
                out = lin.jvp(ts)
                owned[op.out] = lin.jvp_fresh
            tangents[op.out] = out
        return _owned(tangents[self.out_node], v)

    def vjp(self, u: Tensor) -> Tensor:
        """J^T u for cotangents ``u: (P, *out_shape)``; returns ``(P, *in_shape)``."""
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.vjp(u)
        cots: list[Tensor | None] = [None] * self.n_nodes
        owned = [False] * self.n_nodes  # the node's cotangent was allocated here and is held nowhere else
        cots[self.out_node] = u
        for op in reversed(self.ops):
            c = cots[op.out]
            if c is None:
                continue
            cots[op.out] = None  # an in-place op's output node is never read again
            lin = op.linear
            inplace = lin.vjp_inplace
            outs = inplace(c) if inplace is not None and owned[op.out] else None
            fresh = outs is not None or lin.vjp_fresh
            if outs is None:
                outs = lin.vjp(c)
            for i, ci in zip(op.ins, outs):
                if ci is None:
                    continue
                if cots[i] is None:
                    cots[i], owned[i] = ci, fresh
                elif owned[i] and cots[i].shape == ci.shape:
                    cots[i].add_(ci)
                else:
                    cots[i], owned[i] = cots[i] + ci, True
        if cots[0] is None:
            return torch.zeros(u.shape[0], *self.in_shape, dtype=u.dtype)
        return _owned(cots[0], u)


def _owned(t: Tensor, source: Tensor) -> Tensor:
    """``t`` as a tensor of its own: copied (in its layout) where it is the caller's tensor or a
    view of it, or broadcast (stride 0), so a caller may write into the result. No other copy: the
    result keeps the layout the last operation produced (channels-last after a convolution)."""
    root = source if source._base is None else source._base
    shared = t is source or t is root or t._base is root
    broadcast = any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape))
    return t.clone(memory_format=torch.preserve_format) if shared or broadcast else t
