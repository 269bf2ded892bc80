"""The declared shape of one recorded operation: its linearisation and where it reads and writes.

Every rule (`rules`) returns a `Linearization`; the recorder stores it in an `Op` with the nodes
the operation reads and the node it produces; the replay (`replay.LinearTape`) and the fusion pass
(`fusion.fuse_scales`) read only these fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor
# ``[(P, *shape_i)]`` tangents of the operation's inputs (in the order of `Op.ins`) -> ``(P, *shape_out)``.
JvpFn = Callable[[list[Tensor]], Tensor]
# ``(P, *shape_out)`` cotangent -> one cotangent per input, None where it is zero.
VjpFn = Callable[[Tensor], list[Tensor | None]]


class Unsupported(Exception):
    """The forward pass made a call the tape cannot linearise; the step keeps the autograd route."""


@dataclass(frozen=True, slots=True)
class Linearization:
    """The linear map of one call at the recorded input, and what the replay may do with it.

    Attributes:
        jvp: tangents of the inputs ``[(P, *shape_i)]`` -> tangent of the output ``(P, *shape_out)``.
        vjp: cotangent of the output ``(P, *shape_out)`` -> one cotangent per input (None where zero).
        jvp_fresh, vjp_fresh: the map's result is newly allocated, never an alias of its argument,
            so the replay owns it and a later operation may overwrite it.
        jvp_inplace, vjp_inplace: the same map written into its (first) argument, used when the
            replay owns that tensor; each returns None where shapes or dtypes do not allow it.
            Overwriting the replay's own intermediates saves megabyte-sized allocations, paid in
            page faults where the allocator has no freed memory to reuse: J v for 16 resnet56
            tangents was 1.0-1.9x faster over five runs (benchmarks/probe_parts.py).
        channel_scale: ``(C,)`` where the call is a per-channel scale (eval-mode BatchNorm), which
            `fusion.fuse_scales` may fold into the convolution before it.
        rescale: for a convolution, ``rescale(s)`` is the linearisation of the same convolution
            followed by the per-channel scale ``s: (C_out,)`` (its weights times s).
    """

    jvp: JvpFn
    vjp: VjpFn
    jvp_fresh: bool = False
    vjp_fresh: bool = False
    jvp_inplace: JvpFn | None = None
    vjp_inplace: VjpFn | None = None
    channel_scale: Tensor | None = None
    rescale: Callable[[Tensor], Linearization] | None = None

    @classmethod
    def fresh(cls, jvp: JvpFn, vjp: VjpFn) -> Linearization:
        """A pair of maps that both allocate their results."""
        return cls(jvp, vjp, jvp_fresh=True, vjp_fresh=True)


@dataclass(frozen=True, slots=True)
class Op:
    """One recorded operation: node ``out`` = f(nodes ``ins``), with its linearisation.

    Nodes are numbered in the order the recorder first saw them; node 0 is the step's input.
    """

    ins: tuple[int, ...]
    out: int
    linear: Linearization
