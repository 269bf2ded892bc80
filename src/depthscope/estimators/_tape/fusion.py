"""Folding each per-channel scale (eval-mode BatchNorm) into the convolution that feeds it alone.

conv -> BN is the commonest pair in CNNs; one convolution with scaled weights replaces two passes
over the tangents. A scale is folded only where the convolution's output is read by the scale
alone and is not the step's output, so no other operation sees the difference.
"""

from __future__ import annotations

from depthscope.estimators._tape.linearization import Op


def fuse_scales(ops: list[Op], out_node: int) -> list[Op]:
    """``ops`` with every foldable (convolution, per-channel scale) pair replaced by one `Op`
    (the convolution's `Linearization.rescale`), writing the scale's output node."""
    uses: dict[int, int] = {}
    for op in ops:
        for i in op.ins:
            uses[i] = uses.get(i, 0) + 1
    fused: list[Op] = []
    producer: dict[int, int] = {}  # node -> index in `fused` of the op that produces it
    for op in ops:
        scale = op.linear.channel_scale
        src = producer.get(op.ins[0]) if scale is not None else None
        conv = fused[src] if src is not None else None
        if (
            conv is not None
            and conv.linear.rescale is not None
            and uses.get(op.ins[0]) == 1
            and op.ins[0] != out_node
            and conv.out == op.ins[0]
        ):
            fused[src] = Op(conv.ins, op.out, conv.linear.rescale(scale))
            producer[op.out] = src
            continue
        producer[op.out] = len(fused)
        fused.append(op)
    return fused
