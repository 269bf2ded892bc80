"""Brute-force oracles: exact per-example Jacobians by torch.func.jacrev, SVDs in float64."""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

import depthscope as ds


def step_jacobians(chain: ds.Chain, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-step exact Jacobians ``(B, n_out, n_in)`` and the states, for a float chain."""
    states = [x]
    Js = []
    for step in chain:
        xk = states[-1]

        def one(z, f=step.fn):
            return f(z.unsqueeze(0)).squeeze(0)

        J = vmap(jacrev(one))(xk)  # (B, *S_out, *S_in)
        B = xk.shape[0]
        Js.append(J.reshape(B, -1, xk[0].numel()).to(torch.float64).detach())
        with torch.no_grad():
            states.append(step.fn(xk))
    return Js, states


def cumulative(Js: list[torch.Tensor]) -> list[torch.Tensor]:
    """J(0 -> k+1) for every k."""
    out, M = [], None
    for J in Js:
        M = J if M is None else J @ M
        out.append(M)
    return out
