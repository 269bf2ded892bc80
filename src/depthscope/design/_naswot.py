"""NASWOT (Mellor et al. 2021, "Neural Architecture Search without Training"): a zero-cost proxy.

Each example of a mini-batch leaves a binary code in an untrained ReLU network: which ReLU units
are active (c_i in {0, 1}^{N_A}, over every ReLU call of the forward pass). Networks that give
different inputs different codes separate them better before training. The score is

    s = log |det K_H|,   K_H[i, j] = N_A - d_H(c_i, c_j)

(d_H the Hamming distance: K_H counts the units on which i and j agree). Codes are read from the
outputs of every ``nn.ReLU`` module (a unit is active when its output is > 0), through forward
hooks; a module called several times (torchvision's blocks reuse one ReLU) leaves a code at each
call. Models without ``nn.ReLU`` modules (tanh, sigmoid or GELU nets, ReLUs called as functions)
have no codes: `naswot` returns None for them and says why, rather than inventing a score. Two
examples with identical codes make K_H singular: the score is then -inf, as in the paper's code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NaswotScore:
    """log |det K_H| (``score``, None when undefined), the code length N_A and why a score is missing."""

    score: float | None
    units: int
    reason: str | None = None


@torch.no_grad()
def naswot(model: nn.Module, x: torch.Tensor) -> NaswotScore:
    """The NASWOT score of ``model`` on the mini-batch ``x`` (B, *S_0), B >= 2; the model is run in
    eval mode on a copy, so its BatchNorm statistics and mode are untouched."""
    work = copy.deepcopy(model).eval()
    codes: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            codes.append((output > 0).reshape(output.shape[0], -1).double())

    relus = [m for m in work.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        return NaswotScore(
            None, 0, f"no nn.ReLU module in the {type(model).__name__}: NASWOT's codes are ReLU activation patterns"
        )
    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        work(x)
    finally:
        for h in handles:
            h.remove()
    codes = [c for c in codes if c.shape[0] == x.shape[0]]
    if not codes:
        return NaswotScore(None, 0, "the ReLU modules were not called on the batch")
    c = torch.cat(codes, dim=1)
    # agreements: active in both (c c^T) plus inactive in both ((1 - c)(1 - c)^T) = N_A - Hamming
    K = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(K)
    return NaswotScore(float(logdet) if sign > 0 else float("-inf"), int(c.shape[1]))
