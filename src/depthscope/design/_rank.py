"""Ranking untrained candidate models by trainability (zero-cost proxies), best first.

The probe-based score reads three things from one probe of each untrained candidate (natural logs):

    gain   = -|log_gain|                          end-to-end gain near 1 (log gain near 0)
    depth  = -max(0, ln(L / xi))                   the signal's depth scale xi = L / |log gain of the
                                                   body| reaches the body's L steps (0 when it does)
    spread = -std_k ln(grad_ratio_k)               gradient ratios alike from step to step

    score = gain + depth + spread                  (higher is better; 0 is a perfect isometry)

For a `RandomSkipNet` candidate the gain part is the J5 prediction over all draws of masks and
weights, -|ln((sigma^2 + s)^L) / 2|, instead of the one draw's measured gain. Beside it, `rank`
computes one published zero-cost proxy, NASWOT (Mellor et al. 2021; `depthscope.design._naswot`).
Whether either predicts trained accuracy is an empirical question: `Ranking.kendall` measures
Kendall's tau between each score and accuracies the user supplies, and benchmarks/design_tools.py
reports it on digits. Measured there (18 zoo MLPs: plain / residual / ReZero, depths 4, 16, 64,
ReLU and tanh, width 32, each trained 200 Adam steps; two seeds): the probe score's tau with test
accuracy was +0.49 (p = 0.005) and +0.32 (p = 0.07), mean +0.41; NASWOT's, over the ReLU
candidates with a finite score (7-8 of 9), +0.14 and +0.10. Much of the probe score's tau comes
from separating the nets that do not train (deep plain nets, whose gain has already vanished or
exploded) from the rest: among the 16 candidates that reached test accuracy > 0.85 its tau falls
to +0.37 (p = 0.05) and +0.15 (p = 0.44). NASWOT on these narrow nets is often degenerate: a
shallow width-32 net has few ReLU units against a batch of 128 examples, K_H is singular and the
score is -inf.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from depthscope._errors import InputError, check_seed
from depthscope.design._naswot import naswot
from depthscope.design._skip import RandomSkipNet
from depthscope.probing import probe

PARTS = ("gain", "depth", "spread")


@dataclass(frozen=True)
class Candidate:
    """One candidate's scores.

    Attributes:
        name: the candidate's name.
        score: the probe-based trainability score (sum of ``parts``; higher is better).
        parts: "gain", "depth", "spread" (see the module docstring).
        log_gain, depth_scale: the probe's end-to-end log gain and depth scale (measured).
        gain_source: "measured" or "J5 prediction" (random-skip candidates).
        naswot: log |det K_H|, or None (``naswot_reason`` says why).
        steps: the number of chain steps probed.
    """

    name: str
    score: float
    parts: dict[str, float]
    log_gain: float
    depth_scale: float
    gain_source: str
    naswot: float | None
    naswot_reason: str | None
    steps: int


@dataclass(frozen=True)
class Ranking:
    """Candidates sorted by the probe-based score, best first."""

    candidates: list[Candidate] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.candidates]

    def __getitem__(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(name)

    def kendall(self, accuracy: Mapping[str, float]) -> dict[str, dict[str, float | int]]:
        """Kendall's tau (tau-b, scipy) between each score and ``accuracy`` (name -> trained accuracy).

        Returns:
            {"probe": {"tau": ..., "p": ..., "n": ...}, "naswot": {...}}; NASWOT over the candidates
            that have a finite NASWOT score. tau is NaN where fewer than 2 candidates or a constant score.
        """
        missing = [c.name for c in self.candidates if c.name not in accuracy]
        if missing:
            raise InputError(f"no accuracy given for {', '.join(missing)}")
        out = {}
        for label, get in (("probe", lambda c: c.score), ("naswot", lambda c: c.naswot)):
            pairs = [
                (get(c), accuracy[c.name]) for c in self.candidates if get(c) is not None and math.isfinite(get(c))
            ]
            out[label] = _tau(pairs)
        return out


def _tau(pairs: list[tuple[float, float]]) -> dict[str, float | int]:
    if len(pairs) < 2 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return {"tau": float("nan"), "p": float("nan"), "n": len(pairs)}
    # Imported here: scipy.stats costs ~0.3 s, a sixth of `import depthscope`, for one call made
    # only when accuracies are given.
    from scipy.stats import kendalltau

    res = kendalltau([p[0] for p in pairs], [p[1] for p in pairs])
    return {"tau": float(res.statistic), "p": float(res.pvalue), "n": len(pairs)}


def _parts(report, model: nn.Module) -> tuple[dict[str, float], str]:
    """The score's parts from a probe report (see the module docstring)."""
    if isinstance(model, RandomSkipNet):
        log_gain, source = 0.5 * math.log(model.expected_sq_gain()), "J5 prediction"
    else:
        log_gain, source = report.log_gain, "measured"
    # body_span holds chain indices; the report has no row for steps before the first float state
    span = report.body_span
    body = [b for b in report.blocks if span is None or span[0] <= b.index <= span[1]]
    body_gain = report.body_log_gain if report.body_log_gain is not None else report.log_gain
    # ln(L / xi) with xi = L / |body_gain|: L cancels, leaving ln |body_gain| (0 when it does not change)
    depth = -max(0.0, math.log(abs(body_gain))) if body_gain and math.isfinite(body_gain) else 0.0
    ratios = [math.log(b.grad_ratio) for b in body if b.grad_ratio is not None and b.grad_ratio > 0]
    spread = float(np.std(ratios)) if len(ratios) > 1 else 0.0
    return {"gain": -abs(log_gain), "depth": depth, "spread": -spread}, source


def rank(
    candidates: Mapping[str, nn.Module] | Sequence[nn.Module],
    x: torch.Tensor,
    *,
    seed: int = 0,
    naswot_proxy: bool = True,
) -> Ranking:
    """Score untrained candidate models by trainability, best first.

    Args:
        candidates: name -> model, or a list of models (named by class and position). Each must take ``x``.
        x: input batch (B, *S_0), B >= 2 (NASWOT compares examples).
        seed: the probe's seed.
        naswot_proxy: also compute NASWOT.

    Returns:
        a `Ranking`. The models are probed in eval mode on copies; none is modified.
    """
    seed = check_seed(seed)
    if not isinstance(candidates, Mapping):
        candidates = {f"{type(m).__name__}#{i}": m for i, m in enumerate(candidates)}
    if not candidates:
        raise InputError("rank needs at least one candidate")
    wrong = [f"{name!r} ({type(m).__name__})" for name, m in candidates.items() if not isinstance(m, nn.Module)]
    if wrong:
        raise InputError(f"rank takes nn.Module candidates; not modules: {', '.join(wrong)}")
    if x.shape[0] < 2:
        raise InputError(f"rank needs a batch of at least 2 examples, got {x.shape[0]}")
    out = []
    for name, model in candidates.items():
        report = probe(copy.deepcopy(model).eval(), x, lyapunov=0, sigma_min=False, seed=seed)
        parts, source = _parts(report, model)
        nw = naswot(model, x) if naswot_proxy else None
        out.append(
            Candidate(
                name=name,
                score=float(sum(parts.values())),
                parts=parts,
                log_gain=report.log_gain,
                depth_scale=report.depth_scale,
                gain_source=source,
                naswot=None if nw is None else nw.score,
                naswot_reason=None if nw is None else nw.reason,
                steps=len(report.blocks),
            )
        )
    out.sort(key=lambda c: -c.score)
    return Ranking(out)
