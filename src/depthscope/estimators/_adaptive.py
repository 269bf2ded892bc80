"""How many more random samples an estimate needs to reach a target standard error.

Shared by the adaptive Hutchinson estimate of ||J_k||_F (`_hutchinson`) and the growing random
frame of cumulative gains (`_propagate.grow_frame`): both measure the spread of their samples,
ask for the count that spread says is enough, and repeat for a few rounds.
"""

from __future__ import annotations

import math

# The count asked for is a quarter more than the spread says: the spread is itself estimated.
SPREAD_MARGIN = 1.25


def more_samples(have: int, error: float, target: float, cap: int) -> int:
    """How many samples to add to ``have`` so that a standard error of ``error`` (falling as
    1/sqrt(count)) reaches ``target``, at least one and at most up to ``cap`` in all.

    An infinite error (a single sample: no spread to measure) doubles the count.
    """
    need = 2 * have if math.isinf(error) else math.ceil(SPREAD_MARGIN * have * (error / target) ** 2)
    return min(cap, max(need, have + 1)) - have
