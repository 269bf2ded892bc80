"""From measurements to findings: what is wrong with a model's signal path, and where.

`find` reads the probe's `Report` (gains, verdicts, the dominant step, per-step singular values and
gradient ratios) and one cheap forward pass over the chain's steps (`activity`), in which a torch
function mode watches the elementwise nonlinearities, normalisations and sums each step runs:

- sigmoid/tanh outputs on the flat part of the curve (saturation),
- ReLU units that are zero for every example of the batch (dead units),
- a step whose output is a LayerNorm of a sum (Post-LN: LN(x + F(x))),
- a sum with a BatchNorm output as one of its terms (a BatchNorm-scaled residual branch).

Watching torch functions rather than module types sees ``torch.relu(...)`` in a forward as well as
``nn.ReLU``, and any library's blocks alike. Each detector returns a `Finding` with the numbers that
triggered it, or nothing; a model whose measurements cross no threshold gets no finding at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from depthscope.chain import Chain, run_step
from depthscope.doctor._finding import (
    BATCHNORM_BRANCHES,
    BOTTLENECK,
    DEAD_RELU,
    EXPLODING,
    ILL_CONDITIONED,
    POSTLN_CONTRACTION,
    SATURATION,
    VANISHING,
    Finding,
)
from depthscope.probing import DOMINANT_SHARE, STABLE, VERDICT_LOG_GAIN, Report
from depthscope.probing import EXPLODING as EXPLODING_VERDICT
from depthscope.probing import VANISHING as VANISHING_VERDICT

# A unit is saturated where its activation's slope is below this fraction of the slope at the
# centre: tanh'(h) = 1 - y^2 < 0.02, i.e. |y| > 0.98995; sigmoid'(h) = y(1 - y) < 0.02 / 4, i.e. y
# outside [0.00503, 0.99497]. There a gradient crossing the unit loses a factor 50.
SATURATION_SLOPE = 0.02
TANH_SATURATED = math.sqrt(1.0 - SATURATION_SLOPE)
SIGMOID_SATURATED = (1.0 - math.sqrt(1.0 - SATURATION_SLOPE)) / 2.0
# A step is saturated when more than this fraction of its sigmoid/tanh outputs are (at a healthy
# q* ~ 1 of tanh about 1% are; at tanh sigma_w = 4, q* = 12.5, about 45%).
SATURATION_FRACTION = 0.2
# A ReLU unit is dead when it is zero for every example of the batch; a live unit that is on for
# half the inputs is zero for all B examples with probability 2^-B, so the check needs
# B >= DEAD_RELU_MIN_BATCH (2^-8 = 0.4% false "dead"). A step is flagged when more than
# DEAD_RELU_FRACTION of its units carry nothing for the batch (deep plain ReLU nets reach 40% as
# their examples' states align with depth; a residual ReLU MLP stays under 1%).
DEAD_RELU_MIN_BATCH = 8
DEAD_RELU_FRACTION = 0.25
# A step is a bottleneck when it carries more than DOMINANT_SHARE of the end-to-end log change
# (the probe's own rule) and its own log change alone would leave the stable band.
BOTTLENECK_LOG_JUMP = VERDICT_LOG_GAIN
# A step is ill-conditioned when sigma_max / sigma_min (sigma_min exact or estimated, never a Weyl
# bound) exceeds this: ten times a random square Gaussian layer's typical ~4.6 n at n = 200.
# Singular steps (inf) are left out: a ReLU layer's per-example Jacobian is singular by design
# (half its units are off for any one input); units off for every input are the dead-ReLU finding.
ILL_CONDITIONED_COND = 1e4
# A computed sigma_min below SINGULAR_EPS_FACTOR * eps * sigma_max (eps of the probe's dtype) is
# rounding noise on an exactly singular Jacobian (LayerNorm's, which removes the mean): such steps
# count as singular, not ill-conditioned.
SINGULAR_EPS_FACTOR = 10.0
# Post-LN contraction is reported when the Post-LN steps' gradient ratios multiply to less than
# e^-1: the input gradient is then more than a factor e below the top layer's.
POSTLN_LOG_SHRINK = 1.0
# BatchNorm branches are blamed for an explosion when at least this fraction of the body's steps
# add a BatchNorm output to their stream.
BN_BRANCH_SHARE = 0.5

_SQUASH = {"tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
_RELU = frozenset({"relu", "relu_"})
_ADD = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__"})
_LAYER_NORM = frozenset({"layer_norm"})
_BATCH_NORM = frozenset({"batch_norm"})
# Modules whose training mode changes the function (as in the probe): evaluated in eval mode.
STOCHASTIC = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


@dataclass
class StepActivity:
    """What one step's forward pass did (counts over the batch, per example shape).

    Attributes:
        squashed, saturated: sigmoid/tanh output values seen, and how many were saturated.
        relu_units, dead_units: ReLU output units (positions of one example), and how many were
            zero for every example.
        postln: the step's output is a LayerNorm of a sum, LN(x + F(x)).
        bn_branch: the step adds a BatchNorm output to another tensor (a BatchNorm-scaled branch).
    """

    squashed: int = 0
    saturated: int = 0
    relu_units: int = 0
    dead_units: int = 0
    postln: bool = False
    bn_branch: bool = False
    _sums: list[torch.Tensor] = field(default_factory=list, repr=False)
    _bn_outs: list[torch.Tensor] = field(default_factory=list, repr=False)
    _ln_of_sum: list[torch.Tensor] = field(default_factory=list, repr=False)

    @property
    def saturated_fraction(self) -> float:
        return self.saturated / self.squashed if self.squashed else 0.0

    @property
    def dead_fraction(self) -> float:
        return self.dead_units / self.relu_units if self.relu_units else 0.0


def _is_any(t: object, pool: list[torch.Tensor]) -> bool:
    return isinstance(t, torch.Tensor) and any(t is p for p in pool)


class _Watch(TorchFunctionMode):
    """Records into ``self.now`` (the running step's `StepActivity`) what the torch functions of
    interest return; every call is passed through unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.now = StepActivity()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.ndim == 0:
            return out
        now = self.now
        if name in _SQUASH:
            y = out.detach()
            flat = (
                y.abs() > TANH_SATURATED
                if _SQUASH[name] == "tanh"
                else (y < SIGMOID_SATURATED) | (y > 1 - SIGMOID_SATURATED)
            )
            now.squashed += y.numel()
            now.saturated += int(flat.sum())
        elif name in _RELU:
            dead = (out.detach() == 0).all(dim=0)
            now.relu_units += dead.numel()
            now.dead_units += int(dead.sum())
        elif name in _ADD:
            now._sums.append(out)
            if any(_is_any(a, now._bn_outs) for a in args[:2]):
                now.bn_branch = True
        elif name in _BATCH_NORM:
            now._bn_outs.append(out)
        elif name in _LAYER_NORM and _is_any(first, now._sums):
            now._ln_of_sum.append(out)
        return out


@contextmanager
def eval_mode(modules: list[nn.Module]) -> Iterator[None]:
    """BatchNorm and Dropout in eval mode for the duration (as the probe measures), then restored."""
    training = [m for root in modules for m in root.modules() if m.training and isinstance(m, STOCHASTIC)]
    for m in training:
        m.eval()
    try:
        yield
    finally:
        for m in training:
            m.train()


@torch.no_grad()
def activity(chain: Chain, x: torch.Tensor) -> list[StepActivity]:
    """One forward pass over ``chain`` at ``x`` (B, *S_0), watched: one `StepActivity` per step."""
    out = []
    watch = _Watch()
    state = x
    with eval_mode(chain.modules()), watch:
        for k, step in enumerate(chain.steps):
            watch.now = StepActivity()
            state = run_step(step, k, state)
            now = watch.now
            now.postln = _is_any(state, now._ln_of_sum)
            now._sums, now._bn_outs, now._ln_of_sum = [], [], []
            out.append(now)
    return out


def _ends(report: Report) -> tuple[str, float, str] | None:
    """(verdict, log gain, what) that the vanishing/exploding finding judges, or None when stable.

    The body's verdict where the report has a body: depth is what the treatments change, and a
    stem or head alone (a Llama's final RMSNorm rescales its stable body's output by e^+3.1 at
    initialisation) is reported as a bottleneck instead. The end-to-end verdict where there is no
    body, unless it is infinite because of an exactly zero step (a zero-initialised head)."""
    if report.body_verdict is not None and report.body_log_gain is not None:
        if report.body_verdict == STABLE:
            return None
        return report.body_verdict, report.body_log_gain, "across the body"
    if report.verdict != STABLE and not report.zero_steps:
        return report.verdict, report.log_gain, "end to end"
    return None


def _end_to_end(report: Report) -> list[Finding]:
    judged = _ends(report)
    if judged is None:
        return []
    verdict, log_gain, what = judged
    side = -1.0 if verdict == VANISHING_VERDICT else 1.0
    names = report.column("name")
    cum = report.column("cum_log_rms")
    outside = [j for j, c in enumerate(cum) if side * c > VERDICT_LOG_GAIN]
    first = outside[0] if outside else len(names) - 1
    steps = tuple(names[j] for j in outside) or (names[-1],)
    kind = VANISHING if verdict == VANISHING_VERDICT else EXPLODING
    verb = "falls" if kind == VANISHING else "grows"
    depth_scale = report.depth_scale if what == "end to end" else report.body_depth_scale
    summary = (
        f"the RMS gain {verb} to e^{log_gain:+.1f} {what} (stable band: a factor {math.exp(VERDICT_LOG_GAIN):.0f}); "
        f"it leaves the band at {names[first]}"
    )
    evidence = {
        "log_gain": log_gain,
        "band": VERDICT_LOG_GAIN,
        "depth_scale": depth_scale if depth_scale is not None else math.nan,
        "first_step": names[first],
        "judged": what,
    }
    return [Finding(kind, steps, evidence, abs(log_gain) / VERDICT_LOG_GAIN, summary)]


def _bottleneck(report: Report) -> list[Finding]:
    if report.dominant_step is None or report.dominant_share is None or report.dominant_share <= DOMINANT_SHARE:
        return []
    names = report.column("name")
    cum = report.column("cum_log_rms")
    j = names.index(report.dominant_step)
    jump = cum[j] - (cum[j - 1] if j > 0 else 0.0)
    if not abs(jump) > BOTTLENECK_LOG_JUMP:
        return []
    summary = (
        f"{report.dominant_step} alone changes the log gain by {jump:+.1f} "
        f"({report.dominant_share:.0%} of the end-to-end change)"
    )
    evidence = {"log_jump": jump, "share": report.dominant_share, "threshold": BOTTLENECK_LOG_JUMP}
    return [Finding(BOTTLENECK, (report.dominant_step,), evidence, abs(jump) / BOTTLENECK_LOG_JUMP, summary)]


def _by_name(report: Report, acts: list[StepActivity]) -> list[tuple[str, StepActivity]]:
    """(step name, activity) for the report's steps (the differentiated ones), in chain order."""
    return [(b.name, acts[b.index]) for b in report.blocks if b.index < len(acts)]


def _saturation(report: Report, acts: list[StepActivity]) -> list[Finding]:
    rows = [(n, a) for n, a in _by_name(report, acts) if a.squashed]
    hit = [(n, a.saturated_fraction) for n, a in rows if a.saturated_fraction > SATURATION_FRACTION]
    if not hit:
        return []
    worst_name, worst = max(hit, key=lambda r: r[1])
    overall = sum(a.saturated for _, a in rows) / sum(a.squashed for _, a in rows)
    summary = (
        f"{overall:.0%} of the sigmoid/tanh outputs sit on the flat part (slope < {SATURATION_SLOPE:g} of "
        f"its peak); worst {worst_name} at {worst:.0%}"
    )
    evidence = {
        "fraction": overall,
        "max_fraction": worst,
        "max_step": worst_name,
        "threshold": SATURATION_FRACTION,
        "tanh_level": TANH_SATURATED,
    }
    return [Finding(SATURATION, tuple(n for n, _ in hit), evidence, worst / SATURATION_FRACTION, summary)]


def _dead_relu(report: Report, acts: list[StepActivity], batch: int) -> list[Finding]:
    if batch < DEAD_RELU_MIN_BATCH:
        return []
    rows = [(n, a) for n, a in _by_name(report, acts) if a.relu_units]
    hit = [(n, a.dead_fraction) for n, a in rows if a.dead_fraction > DEAD_RELU_FRACTION]
    if not hit:
        return []
    worst_name, worst = max(hit, key=lambda r: r[1])
    overall = sum(a.dead_units for _, a in rows) / sum(a.relu_units for _, a in rows)
    summary = f"{overall:.0%} of the ReLU units are zero for all {batch} examples; worst {worst_name} at {worst:.0%}"
    evidence = {
        "fraction": overall,
        "max_fraction": worst,
        "max_step": worst_name,
        "threshold": DEAD_RELU_FRACTION,
        "batch": batch,
    }
    return [Finding(DEAD_RELU, tuple(n for n, _ in hit), evidence, worst / DEAD_RELU_FRACTION, summary)]


def _postln(report: Report, acts: list[StepActivity]) -> list[Finding]:
    post = {n for n, a in _by_name(report, acts) if a.postln}
    rows = [(b.name, math.log(b.grad_ratio)) for b in report.blocks if b.name in post and b.grad_ratio > 0]
    if not rows:
        return []
    shrink = sum(r for _, r in rows)
    if not shrink < -POSTLN_LOG_SHRINK:
        return []
    summary = (
        f"{len(rows)} steps end in LayerNorm(x + F(x)); across them the gradient shrinks by e^{shrink:.1f} "
        f"({shrink / len(rows):+.2f} per step)"
    )
    evidence = {
        "log_shrink": shrink,
        "per_step": shrink / len(rows),
        "steps": len(rows),
        "threshold": -POSTLN_LOG_SHRINK,
    }
    return [Finding(POSTLN_CONTRACTION, tuple(n for n, _ in rows), evidence, -shrink / POSTLN_LOG_SHRINK, summary)]


def _bn_branches(report: Report, acts: list[StepActivity]) -> list[Finding]:
    judged = _ends(report)
    if judged is None or judged[0] != EXPLODING_VERDICT:
        return []
    # The branches sit in the body: its gain is what they make (a head may pull the end to end back).
    log_gain = report.body_log_gain if report.body_log_gain is not None else judged[1]
    rows = _by_name(report, acts)
    if report.body_span is not None:
        lo, hi = report.body_span
        rows = [(n, a) for (n, a), b in zip(rows, report.blocks, strict=True) if lo <= b.index <= hi]
    branch = [n for n, a in rows if a.bn_branch]
    if not rows or len(branch) < BN_BRANCH_SHARE * len(rows):
        return []
    gains = {b.name: b.local_rms for b in report.blocks}
    per_step = sum(math.log(gains[n]) for n in branch) / len(branch)
    summary = (
        f"{len(branch)} of {len(rows)} body steps add a BatchNorm-scaled branch to their stream; at "
        f"initialisation each multiplies the gain by e^{per_step:+.2f}, e^{log_gain:+.1f} across the body"
    )
    evidence = {
        "log_gain": report.log_gain,  # end to end
        "body_log_gain": log_gain,
        "band": VERDICT_LOG_GAIN,
        "branch_steps": len(branch),
        "body_steps": len(rows),
        "log_gain_per_step": per_step,
    }
    return [Finding(BATCHNORM_BRANCHES, tuple(branch), evidence, log_gain / VERDICT_LOG_GAIN, summary)]


def _ill_conditioned(report: Report) -> list[Finding]:
    dtype = getattr(torch, str(report.settings.get("dtype", "float32")), torch.float32)
    singular = 1.0 / (SINGULAR_EPS_FACTOR * torch.finfo(dtype).eps)
    rows = [(b.name, b.local_cond, b.sigma_min_kind) for b in report.blocks if b.local_cond is not None]
    hit = [(n, c, kind) for n, c, kind in rows if ILL_CONDITIONED_COND < c < singular]
    if not hit:
        return []
    worst_name, worst, kind = max(hit, key=lambda r: r[1])
    summary = (
        f"{len(hit)} steps have sigma_max / sigma_min above {ILL_CONDITIONED_COND:.0e}; worst {worst_name} at "
        f"{worst:.2g} (sigma_min {kind})"
    )
    evidence = {"max_cond": worst, "max_step": worst_name, "threshold": ILL_CONDITIONED_COND, "sigma_min_kind": kind}
    severity = math.log(worst) / math.log(ILL_CONDITIONED_COND)
    return [Finding(ILL_CONDITIONED, tuple(n for n, _, _ in hit), evidence, severity, summary)]


def find(report: Report, chain: Chain, x: torch.Tensor) -> tuple[Finding, ...]:
    """Every finding on the model behind ``chain``, most severe first.

    Args:
        report: the probe's report of ``chain`` at ``x``.
        chain: the chain the probe measured; one more forward pass over it gives the activation
            statistics (`activity`).
        x: the probe's input batch (B, *S_0); dead ReLU units are judged only for B >=
            ``DEAD_RELU_MIN_BATCH``.
    """
    acts = activity(chain, x)
    found = [
        *_end_to_end(report),
        *_bottleneck(report),
        *_saturation(report, acts),
        *_postln(report, acts),
        *_bn_branches(report, acts),
        *_ill_conditioned(report),
        *_dead_relu(report, acts, int(x.shape[0])),
    ]
    return tuple(sorted(found, key=lambda f: -f.severity))
