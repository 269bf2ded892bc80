"""Constants shared by claims J1-J8 (seed 001): the digits input size (run seeds: `_seeds`)."""

from __future__ import annotations

# Digits images are 8 x 8 = 64 pixels, 10 classes.
DIGITS_FEATURES = 64
