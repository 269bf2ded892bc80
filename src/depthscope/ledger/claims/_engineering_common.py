"""Helpers shared by claims J1-J8 (seed 001): the seeds of independent runs and the digits input size."""

from __future__ import annotations

# Independent runs of one experiment use seeds seed * SEED_STRIDE + i, i = 0, 1, ...
SEED_STRIDE = 1000
# Digits images are 8 x 8 = 64 pixels, 10 classes.
DIGITS_FEATURES = 64


def _run_seeds(seed: int, count: int) -> list[int]:
    """The seeds of ``count`` independent runs of an experiment started with ``seed``."""
    return [seed * SEED_STRIDE + i for i in range(count)]
