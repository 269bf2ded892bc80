"""How many near-identity blocks fit: the growth bound of claim J2, computed and then tested.

A new residual block with ||J_F||_2 <= eps has every singular value of its Jacobian I + J_F in
[1 - eps, 1 + eps] (Weyl, claim R7); m of them in a row scale any vector by a factor in
[(1 - eps)^m, (1 + eps)^m] (claim R8). The stack keeps the gain within 1 +- tol while

    prod_i (1 + eps_i) <= 1 + tol   and   prod_i (1 - eps_i) >= 1 - tol,

which for equal norms is m <= m_eps = min(floor(log(1 + tol) / log(1 + eps)),
floor(log(1 - tol) / log(1 - eps))). `growth_bound` builds the new blocks, inserts more of them
than the bound allows into a copy of the model, MEASURES each new block's ||J_block - I||_2 with
the probe (so the bound it reports is computed from measured norms, not assumed ones), and probes
the inserted stack at the states it receives to show the measured gain block by block: inside
1 +- tol up to the bound, and, for aligned blocks (J_F = eps I, the blocks that attain the
bound), outside it one block past it. "Gain" is the probe's end-to-end gain of the inserted
stack, exp(mean over examples of log(||J_stack||_F / sqrt(n))), which lies between the stack's
smallest and largest singular values and so inside the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from depthscope._errors import InputError, check_count, check_seed
from depthscope.chain import Chain
from depthscope.design._grow import insertion_layout, new_blocks, residual_wrap
from depthscope.design._sites import edited_copy, model_input
from depthscope.probing import probe

# Block families whose growth is measured: "aligned" (J_F = eps I exactly: a scaled identity
# branch, the worst case that attains the bound) and "noise" (copies of the model's block with
# re-drawn weights scaled to ||J_F||_2 = eps, what `grow(init="noise")` inserts).
BOUND_KINDS = ("aligned", "noise")
# Stacks are measured to twice the bound plus one block, so the curve shows what lies past it;
# at most this many blocks (a tiny eps would otherwise ask for thousands).
MAX_MEASURED = 64
# Rounding allowed when the product of measured norms is compared with 1 +- tol.
BOUND_SLACK = 1e-9


def blocks_within(norms: list[float], tol: float) -> int:
    """The largest m with prod_{i<=m} (1 + eps_i) <= 1 + tol and prod_{i<=m} (1 - eps_i) >= 1 - tol.

    norms: eps_i = ||J_F_i||_2 of the new blocks in insertion order (a block with eps_i >= 1 has no
    positive lower bound, so the count stops before it).
    """
    up, down = 0.0, 0.0
    for m, e in enumerate(norms):
        if e >= 1:
            return m
        up += math.log1p(e)
        down += math.log1p(-e)
        if up > math.log1p(tol) + BOUND_SLACK or down < math.log1p(-tol) - BOUND_SLACK:
            return m
    return len(norms)


def bound_for(eps: float, tol: float) -> int:
    """m_eps: how many blocks with ||J_F||_2 = eps keep the gain within 1 +- tol (the closed form)."""
    up = math.log1p(tol) / math.log1p(eps)
    down = math.log1p(-tol) / math.log1p(-eps) if eps < 1 else 0.0
    return int(math.floor(min(up, down) + BOUND_SLACK))


@dataclass(frozen=True)
class GrowthCurve:
    """What m new blocks of one family did, for m = 1..len(gain).

    Attributes:
        kind: "aligned" or "noise".
        norms: measured ||J_block - I||_2 = ||J_F||_2 of each new block (probe, batch mean).
        bound: the number of blocks the measured norms allow (`blocks_within`).
        gain: measured end-to-end gain of the first m inserted blocks (probe, at the insertion states).
        first_outside: the smallest m whose gain leaves [1 - tol, 1 + tol], or None.
    """

    kind: str
    norms: list[float]
    bound: int
    gain: list[float]
    first_outside: int | None


@dataclass(frozen=True)
class GrowthPlan:
    """The growth bound of a model at one insertion point, and its test.

    Attributes:
        after: the block the new ones follow.
        eps, tol: the new blocks' branch norm and the allowed gain band 1 +- tol.
        bound: m_eps, the closed form for blocks of norm exactly eps.
        model_norms: measured ||J_block - I||_2 of the model's own blocks (name -> norm), for scale.
        curves: one `GrowthCurve` per family in ``BOUND_KINDS``.
    """

    after: str
    eps: float
    tol: float
    bound: int
    model_norms: dict[str, float]
    curves: list[GrowthCurve] = field(default_factory=list)

    def curve(self, kind: str) -> GrowthCurve:
        for c in self.curves:
            if c.kind == kind:
                return c
        raise KeyError(kind)

    @property
    def measured_bound(self) -> int:
        """The bound from measured norms: the smallest over the families."""
        return min(c.bound for c in self.curves)


def _aligned(eps: float) -> nn.Module:
    """x -> x + eps x: branch Jacobian J_F = eps I exactly, any state shape."""
    return residual_wrap(nn.Identity(), eps)


def _measure(model: nn.Module, x: torch.Tensor, site_path: str, index: int, blocks: list, seed: int):
    """Insert ``blocks`` after the block at ``site_path`` (chain index ``index``), probe the inserted
    stack at the states it receives; returns (norms, gains)."""
    grown = edited_copy(model, after={site_path: blocks}).eval()
    chain = Chain.from_module(grown, None, example=x)
    with torch.no_grad():
        h = chain[: index + 1](x)
    stack = Chain(chain.steps[index + 1 : index + 1 + len(blocks)])
    report = probe(stack, h, lyapunov=0, seed=seed)
    norms = [float(b.identity_gap) for b in report.blocks]
    gains = [math.exp(b.cum_log_rms) for b in report.blocks]
    return norms, gains


def growth_bound(
    model: nn.Module,
    x: torch.Tensor | None = None,
    tol: float = 0.05,
    eps: float = 0.01,
    *,
    after: str | None = None,
    blocks: int | None = None,
    seed: int = 0,
) -> GrowthPlan:
    """How many blocks with ||J_F||_2 <= eps can follow block ``after`` with the gain within 1 +- tol.

    Args:
        model: the model to grow (any module `grow` accepts).
        x: input batch (B, *S_0); None for zoo models.
        tol: the gain band, 0 < tol < 1.
        eps: the new blocks' branch norm, 0 < eps < 1.
        after: the insertion point (step name or module path); None: the last block.
        blocks: how many blocks to insert for the test; default 2 m_eps + 1 (at most ``MAX_MEASURED``).
        seed: seeds the new blocks and the probe.

    Returns:
        a `GrowthPlan`: the closed-form bound, the bound from the measured norms, and the measured gain
        of 1, 2, ... inserted blocks of each family.
    """
    seed = check_seed(seed)
    for name, v in (("tol", tol), ("eps", eps)):
        if not (0 < v < 1):
            raise InputError(f"{name} must lie in (0, 1), got {v!r}")
    x = model_input(model, x, seed)
    lay, site = insertion_layout(model, x, after)
    m_eps = bound_for(eps, tol)
    count = check_count("blocks", blocks, 1) if blocks is not None else min(2 * m_eps + 1, MAX_MEASURED)
    report = probe(lay.chain, x, lyapunov=0, seed=seed)
    # by chain index: the report has no row for steps before the first float state (token ids)
    gaps = {b.index: b.identity_gap for b in report.blocks}
    model_norms = {s.name: float(gaps[s.index]) for s in lay.sites if s.residual}
    h = lay.states[site.index + 1]
    stacks = {
        "aligned": [_aligned(eps) for _ in range(count)],
        "noise": new_blocks(site, h, count, "noise", eps, "residual", seed),
    }
    curves = []
    for kind in BOUND_KINDS:
        norms, gains = _measure(model, x, site.path, site.index, stacks[kind], seed)
        outside = next((m + 1 for m, g in enumerate(gains) if not (1 - tol <= g <= 1 + tol)), None)
        curves.append(GrowthCurve(kind, norms, blocks_within(norms, tol), gains, outside))
    return GrowthPlan(site.name, eps, tol, m_eps, model_norms, curves)
