"""Constants shared by claims N1-N4 (the Fibonacci and norm-preservation text, seed 002)."""

from __future__ import annotations

import torch

NORM_PRESERVATION_PAPER = (
    "A. Zaeemzadeh, N. Rahnavard, M. Shah, Norm-preservation: why residual networks can become "
    "extremely deep?, IEEE TPAMI 43(11), 2021 (arXiv:1805.07477)"
)
DTYPE = torch.float64
# Values are drawn no lower than this on log axes (exact zeros have no logarithm).
PLOT_FLOOR = 1e-17
