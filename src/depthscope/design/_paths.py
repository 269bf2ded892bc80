"""Gradient paths through the residual blocks of a model (Veit et al. 2016; claim J6), measured.

A residual block's Jacobian is J = I + A with A = J - I its branch's share; L residual blocks in a
row multiply to prod_l (I + A_l), which expands into 2^L paths, C(L, k) of which pass through k
branches (a binomial path-length distribution). The input gradient splits the same way:
g = sum_k P_k^T g_top, with P_k the sum of the products through exactly k branches. `paths`
computes every P_k^T g_top exactly, by one vector-Jacobian product per block with all k stacked in
the batch: going down, u_k <- u_k + A^T u_{k-1} = u_k + (J^T u_{k-1} - u_{k-1}) at a residual block
(A^T v needs no knowledge of the branch: it is J^T v - v), and u_k <- J^T u_k at any other step
(a transition, a plain block, the head), which every path must cross. Summing the u_k gives back
autograd's gradient; the relative difference is reported (``decomposition_error``).

The effective depth is the gradient-weighted mean path length sum_k k ||P_k^T g|| / sum_k
||P_k^T g||; ``effective_range`` is the narrowest window of path lengths that carries
``GRADIENT_MASS`` of the gradient norm (Veit et al.'s "effective paths": in their 110-layer ResNet
the gradient came from paths 5 to 17 blocks long out of 54).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from depthscope._errors import InputError, NoBlocksError, check_seed
from depthscope.design._sites import Layout, layout, model_input

# The share of the summed path-gradient norms the effective range must hold (Veit et al. 2016
# report the range that holds most of the gradient; 90% is our reading of "most").
GRADIENT_MASS = 0.9


@dataclass(frozen=True)
class PathProfile:
    """Path lengths over a model's residual blocks and the gradient they carry.

    Attributes:
        blocks: names of the residual blocks, bottom to top (L of them).
        count_share: C(L, k) / 2^L for k = 0..L: the share of paths of length k.
        gradient_norm: mean over examples of ||P_k^T g_top||, k = 0..L (the loss's units).
        gradient_share: gradient_norm / its sum.
        effective_depth: sum_k k * gradient_share[k].
        effective_range: (k_lo, k_hi), the narrowest window holding ``GRADIENT_MASS`` of the share.
        decomposition_error: ||sum_k P_k^T g - g|| / ||g|| against autograd.
        loss: "cross-entropy" (labels given) or "random-projection".
    """

    blocks: list[str]
    count_share: list[float]
    gradient_norm: list[float]
    gradient_share: list[float]
    effective_depth: float
    effective_range: tuple[int, int]
    decomposition_error: float
    loss: str

    @property
    def n_paths(self) -> int:
        """2^L, the number of paths through the residual blocks."""
        return 2 ** len(self.blocks)


def effective_range(share: np.ndarray, mass: float = GRADIENT_MASS) -> tuple[int, int]:
    """The narrowest window [k_lo, k_hi] with sum(share[k_lo:k_hi + 1]) >= mass (leftmost on ties)."""
    n = len(share)
    best = (0, n - 1)
    for lo in range(n):
        total = 0.0
        for hi in range(lo, n):
            total += share[hi]
            if total >= mass - 1e-12:
                if hi - lo < best[1] - best[0]:
                    best = (lo, hi)
                break
    return best


def _vjp(step, state: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """J^T u_c for every component c: u (C, B, *S_out), state (B, *S_in) -> (C, B, *S_in).

    The C components are stacked in the batch (examples are independent, so the Jacobian of the
    stacked batch is block-diagonal)."""
    C, B = u.shape[0], state.shape[0]
    inp = state.detach().repeat(C, *([1] * (state.ndim - 1))).requires_grad_(True)
    out = step(inp)
    (g,) = torch.autograd.grad(out, inp, grad_outputs=u.reshape(C * B, *u.shape[2:]).to(out.dtype))
    return g.reshape(C, B, *state.shape[1:])


def _top_gradient(out: torch.Tensor, y: torch.Tensor | None, seed: int) -> tuple[torch.Tensor, str]:
    """d loss / d output, (B, *S_L): cross-entropy summed over examples, or the probe's fixed random
    projection sum_b <output_b, g> with a unit g drawn from ``seed``."""
    out = out.detach().requires_grad_(True)
    if y is not None:
        loss = nn.functional.cross_entropy(out, y, reduction="sum")
        kind = "cross-entropy"
    else:
        g = torch.randn(out.shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        g = (g / g.norm()).to(device=out.device, dtype=out.dtype)
        loss = (out * g).sum()
        kind = "random-projection"
    (grad,) = torch.autograd.grad(loss, out)
    return grad, kind


def profile(lay: Layout, x: torch.Tensor, y: torch.Tensor | None = None, seed: int = 0) -> PathProfile:
    """`PathProfile` of a layout (see `paths`)."""
    residual = [s for s in lay.sites if s.residual]
    if not residual:
        found = ", ".join(f"{s.name} (skip={s.skip}, {s.in_shape}->{s.out_shape})" for s in lay.sites) or "none"
        raise NoBlocksError(
            f"no residual (skip-connected, shape-preserving) blocks to count paths over; blocks: {found}"
        )
    is_res = {s.index for s in residual}
    start = residual[0].index
    steps, states = lay.chain.steps, lay.states
    top, kind = _top_gradient(states[-1], y, seed)
    u = top.unsqueeze(0).double()
    for k in range(len(steps) - 1, start - 1, -1):
        through = _vjp(steps[k], states[k], u).double()
        if k in is_res:  # u_j <- u_j + A^T u_{j-1}, A^T v = J^T v - v
            a = through - u
            u = torch.cat([u, torch.zeros_like(u[:1])]) + torch.cat([torch.zeros_like(a[:1]), a])
        else:
            u = through
    # autograd's gradient at the same state, for the decomposition check
    h = states[start].detach().requires_grad_(True)
    out = h
    for step in steps[start:]:
        out = step(out)
    (g0,) = torch.autograd.grad(out, h, grad_outputs=top.to(out.dtype))
    g0 = g0.double()
    error = float((u.sum(0) - g0).norm() / g0.norm()) if g0.norm() > 0 else float((u.sum(0)).norm())
    norms = u.flatten(2).norm(dim=2).mean(1).cpu().numpy()
    share = norms / norms.sum() if norms.sum() > 0 else np.full_like(norms, np.nan)
    L = len(residual)
    return PathProfile(
        blocks=[s.name for s in residual],
        count_share=[math.comb(L, k) / 2**L for k in range(L + 1)],
        gradient_norm=norms.tolist(),
        gradient_share=share.tolist(),
        effective_depth=float((np.arange(L + 1) * share).sum()),
        effective_range=effective_range(share),
        decomposition_error=error,
        loss=kind,
    )


def paths(
    model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *, seed: int = 0
) -> PathProfile:
    """The path-length distribution over the residual blocks of ``model`` and the gradient share by
    path length, measured at ``x`` (B, *S_0) (see the module docstring).

    Args:
        model: any module the chain discovery accepts; measured in eval mode on a copy.
        x: input batch; None for zoo models (their own example input).
        y: labels (B,) for a cross-entropy loss; None: the probe's random projection of the output.
        seed: seeds the random projection.

    Raises:
        NoBlocksError: the model has no residual block (the message lists the blocks found).
    """
    seed = check_seed(seed)
    x = model_input(model, x, seed)
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise InputError(f"y must be labels of shape ({x.shape[0]},), got {tuple(y.shape)}")
    return profile(layout(model, x), x, y, seed)
