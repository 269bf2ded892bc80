"""The seeds of independent runs inside one experiment, shared by every claim that repeats a run."""

from __future__ import annotations

# Run i of an experiment started with ``seed`` uses seed * SEED_STRIDE + i, so the runs of
# different experiment seeds never share a network (no experiment repeats a run 1000 times).
SEED_STRIDE = 1000


def run_seeds(seed: int, count: int) -> list[int]:
    """The seeds of ``count`` independent runs of an experiment started with ``seed``."""
    return [seed * SEED_STRIDE + i for i in range(count)]
