"""Alerts: the bands a measured step is checked against, and the once-per-event bookkeeping.

Gradient norms are judged relative to the gradient arriving at the top block's output,
||dL/dx_k|| / ||dL/dx_{K-1}||: absolute norms move with the loss's scale, the learning rate and
the stage of training, while the relative norm says how much of the gradient reaching the top of
the stack a block still receives, which is the question of depth. An event is reported once, when
it begins: a block entering the vanishing band is named once, and named again only after it has
left the band and come back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from depthscope.monitor._records import Alert

# A block whose output gradient is below this fraction of the top block's learns about a
# thousand times slower than the top under plain SGD: three decades is far past the spread of a
# healthy network (a He-initialised ResNet-56 stays within one decade).
VANISHING_BELOW = 1e-3
# The mirror image: a thousand times the top block's gradient.
EXPLODING_ABOVE = 1e3
# The end-to-end gradient gain ||dL/dx_0|| / ||dL/dx_{K-1}|| is stable within one decade either
# way, the same band as the probe's verdict (depthscope.probing: |log gain| <= ln 10).
GAIN_BAND = (0.1, 10.0)

VANISHING, EXPLODING, GAIN_LOW, GAIN_HIGH, NONFINITE = "vanishing", "exploding", "gain_low", "gain_high", "nonfinite"


def first_nonfinite(forward_bad: Sequence[bool], backward_bad: Sequence[bool]) -> tuple[int, str, bool] | None:
    """Where a NaN/Inf first appeared, as (block index, "forward" | "backward", above).

    The forward runs from block 0 up: the first block whose output x_k held one made it. The
    backward runs from the top down: if dL/dx_j is the highest non-finite output gradient, block
    j+1's backward made it (its input gradient is x_j's output gradient); if j is the top block, it
    came from above the blocks (the head or the loss), and ``above`` is True. None: all finite.

    Args:
        forward_bad, backward_bad: (K,) whether x_k, and dL/dx_k, held a NaN or Inf.
    """
    for k, bad in enumerate(forward_bad):
        if bad:
            return k, "forward", False
    top = len(backward_bad) - 1
    for j in range(top, -1, -1):
        if backward_bad[j]:
            return (j + 1, "backward", False) if j < top else (top, "backward", True)
    return None


class AlertBook:
    """The events under way, so that each is reported once, when it begins."""

    def __init__(self, blocks: Sequence[str]):
        self.blocks = tuple(blocks)
        self._active: dict[str, set[int]] = {VANISHING: set(), EXPLODING: set()}
        self._gain_state = ""
        self._nonfinite = False

    def check(
        self, step: int, grad_norm: np.ndarray, end_to_end: float, nonfinite: tuple[int, str] | None
    ) -> list[Alert]:
        """The alerts that begin at ``step``.

        Args:
            grad_norm: (K,) gradient norms at the block outputs (nan: no gradient).
            end_to_end: ||dL/dx_0|| / ||dL/dx_{K-1}||.
            nonfinite: `first_nonfinite`'s answer for this step.
        """
        out: list[Alert] = []
        if nonfinite is not None:
            if not self._nonfinite:
                k, phase, above = nonfinite
                name = self.blocks[k]
                where = f"above block {name} (the head or the loss)" if above else f"at block {name} (index {k})"
                msg = f"NaN/Inf first appeared at step {step} in the {phase} pass, {where}"
                out.append(Alert(step, NONFINITE, (name,), phase, msg))
            self._nonfinite = True
            return out  # the bands mean nothing on a step with NaN/Inf
        self._nonfinite = False
        top = grad_norm[-1]
        if not (math.isfinite(top) and top > 0):
            return out
        rel = grad_norm / top
        for kind, hit in ((VANISHING, rel < VANISHING_BELOW), (EXPLODING, rel > EXPLODING_ABOVE)):
            now = {k for k in range(len(rel)) if bool(hit[k])}
            new = sorted(now - self._active[kind])
            self._active[kind] = now
            if new:
                names = tuple(self.blocks[k] for k in new)
                band = f"below {VANISHING_BELOW:g}" if kind == VANISHING else f"above {EXPLODING_ABOVE:g}"
                msg = (
                    f"{kind} gradient at step {step}: {len(names)} block(s) get {band} of the top block's "
                    f"gradient norm: {_name_list(names)}"
                )
                out.append(Alert(step, kind, names, "", msg))
        state = ""
        if math.isfinite(end_to_end) or end_to_end == math.inf:
            if end_to_end < GAIN_BAND[0]:
                state = GAIN_LOW
            elif end_to_end > GAIN_BAND[1]:
                state = GAIN_HIGH
        if state and state != self._gain_state:
            side = f"below {GAIN_BAND[0]:g}" if state == GAIN_LOW else f"above {GAIN_BAND[1]:g}"
            msg = (
                f"end-to-end gradient gain {end_to_end:.3g} at step {step} is {side} "
                f"(from {self.blocks[-1]} down to {self.blocks[0]})"
            )
            out.append(Alert(step, state, (self.blocks[0], self.blocks[-1]), "", msg))
        self._gain_state = state
        return out


# Names listed in full up to this many; longer lists show both ends (a 30-block MLP's vanishing
# set is a prefix of the blocks, so the ends say which).
MAX_NAMES_SHOWN = 8


def _name_list(names: Sequence[str]) -> str:
    if len(names) <= MAX_NAMES_SHOWN:
        return ", ".join(names)
    half = MAX_NAMES_SHOWN // 2
    return ", ".join(names[:half]) + f", ... ({len(names) - MAX_NAMES_SHOWN} more), " + ", ".join(names[-half:])
