"""From the chain's log gains to verdicts that say what drives them.

The end-to-end verdict judges the product of every step's Jacobian. One step can decide it alone:
the final LayerNorm of a Pre-LN transformer acting on small embeddings multiplies the RMS gain by
~30 while every layer stays near 1, and a zero-initialised head makes the gain 0. So besides the
chain's verdict the probe reports:

- the body: the differentiated steps apart from a stem and a head (rule in `body_span`), its log
  gain, verdict and depth scale;
- the dominant step: the step whose jump in the cumulative log gain is the largest share of the
  end-to-end log change (`step_log_gains`, `dominant_step`);
- zero steps: steps whose Jacobian is exactly zero. Below them no gradient of the loss arrives,
  so the gradient ratios there are measured for a fresh random projection (`gradient_log_ratios`);
- notes: one sentence per finding, for the renderers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from depthscope.estimators import log_rms_from_columns, push_log_norms, random_frame, tangent_norms

# End-to-end RMS gain outside [1/10, 10] is called vanishing or exploding: a factor 10 in the
# signal (or gradient) scale is where learning-rate tuning stops compensating in practice.
VERDICT_LOG_GAIN = math.log(10.0)

VANISHING = "vanishing"
EXPLODING = "exploding"
STABLE = "stable"

# A step is named as what drives the verdict when it carries more of the end-to-end log change
# than all the other steps together.
DOMINANT_SHARE = 0.5
# The names that `ChainModule` models, `Chain.from_module` (hooked blocks) and `Chain.from_hf`
# give the steps before and after their blocks.
STEM_NAMES = frozenset({"stem"})
HEAD_NAMES = frozenset({"head", "readout"})
# A normalisation layer alone at an end of the chain belongs to the stem or head (the final
# LayerNorm / RMSNorm of a Pre-LN transformer), not to the repeated blocks.
NORM_MODULES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.modules.batchnorm._NormBase)

# When a zero step before the body annihilates the signal (an RNN's constant initial state), the
# body's gain is pushed from its own input: basis columns (exact) up to this width per example, the
# same bound as the probe's exact cumulative norms; a random orthonormal frame beyond.
BODY_EXACT_MAX_DIM = 256

ApplyFn = Callable[[int, torch.Tensor], torch.Tensor]


def verdict(log_gain: float, steps: int) -> tuple[str, float]:
    """(verdict, depth_scale) from the end-to-end log gain over ``steps`` steps.

    depth_scale = steps / |log_gain|: the number of steps over which the gain changes by a factor
    e at the chain's average rate (inf when the gain does not change).
    """
    if not math.isfinite(log_gain):
        return (VANISHING if log_gain < 0 else EXPLODING), 0.0
    rate = log_gain / max(1, steps)
    scale = math.inf if rate == 0 else 1.0 / abs(rate)
    if log_gain < -VERDICT_LOG_GAIN:
        return VANISHING, scale
    if log_gain > VERDICT_LOG_GAIN:
        return EXPLODING, scale
    return STABLE, scale


@dataclass(frozen=True)
class StepFacts:
    """What the analysis needs of one differentiated step.

    Attributes:
        name, index: the step's label and position in the chain.
        in_shape, out_shape: per-example state shapes S_k and S_{k+1}.
        is_norm: the step is a lone normalisation layer (see `NORM_MODULES`).
        local_rms: RMS singular value of J_k (exactly 0 for a zero Jacobian).
    """

    name: str
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    is_norm: bool
    local_rms: float

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)


@dataclass(frozen=True)
class Drivers:
    """What drives the verdict (fields as in `Report`; positions index the differentiated steps).

    Attributes:
        body: (first, last) positions of the body, inclusive; None when no step is left.
        body_log_gain: log RMS gain across the body (natural log); None when it cannot be measured.
        body_verdict, body_depth_scale: `verdict` of body_log_gain over the body's steps.
        dominant: position of the dominant step; None when no step changes the gain.
        dominant_share: its |jump| over the sum of all |jumps|, in [0, 1].
        zero_steps: positions of the steps whose Jacobian is exactly zero.
        notes: one sentence per finding.
    """

    body: tuple[int, int] | None
    body_log_gain: float | None
    body_verdict: str | None
    body_depth_scale: float | None
    dominant: int | None
    dominant_share: float | None
    zero_steps: list[int]
    notes: list[str]


def is_norm_module(module: nn.Module | None) -> bool:
    """Whether a step's module is a bare normalisation layer."""
    return isinstance(module, NORM_MODULES)


def body_span(steps: Sequence[StepFacts]) -> tuple[int, int] | None:
    """Positions (first, last), inclusive, of the body among the differentiated steps.

    The chain's first differentiated step is its stem, and its last step its head, when
      1. the chain names it so: "stem" first, "head" or "readout" last (`STEM_NAMES`, `HEAD_NAMES`:
         the names of depthscope's zoo, `Chain.from_module` and `Chain.from_hf`), or
      2. it changes the per-example shape (the embedding or classifier of a plain Sequential), or
      3. it is a lone normalisation layer (a Pre-LN transformer's final norm).
    At most one step is left out at each end; steps before the first floating-point state (token
    embeddings fed with integer ids) are not differentiated and so never part of the body. None
    when nothing is left (a chain of only a stem and a head).
    """

    def edge(j: int, names: frozenset[str]) -> bool:
        s = steps[j]
        return s.name in names or s.in_shape != s.out_shape or s.is_norm

    first, last = 0, len(steps) - 1
    if edge(first, STEM_NAMES):
        first += 1
    if last >= first and edge(last, HEAD_NAMES):
        last -= 1
    return (first, last) if first <= last else None


def step_log_gains(cum: Sequence[float], steps: Sequence[StepFacts], n0: int) -> list[float]:
    """Each step's part d_j of the end-to-end log gain (natural log).

    d_j = cum_j - cum_{j-1}, the jump in the cumulative log RMS gain across step j (cum_{-1} = 0:
    J(0 -> 0) = I), plus, for the first step whose output is as narrow as the chain's output, the
    correction 0.5 log(n0 / nL) that makes the end-to-end gain an RMS over the nonzero singular
    values. So sum_j d_j = log_gain. After a step that annihilates the signal (cum = -inf) the
    jumps are undefined (nan).
    """
    n_last = steps[-1].n_out
    correction = 0.5 * math.log(n0 / min(n0, n_last))
    jumps = []
    prev = 0.0
    for s, c in zip(steps, cum):
        d = c - prev if math.isfinite(prev) else math.nan
        if correction and s.n_out <= n_last:
            d, correction = d + correction, 0.0
        jumps.append(d)
        prev = c
    return jumps


def dominant_step(jumps: Sequence[float]) -> tuple[int | None, float | None]:
    """(position, share) of the step with the largest |d_j|; share = |d_j| / sum_i |d_i|.

    A step with an infinite jump (a zero step: the gain drops to 0) takes the whole share; the
    undefined jumps after it are ignored. (None, None) when no step changes the gain.
    """
    for j, d in enumerate(jumps):
        if not math.isfinite(d):
            return j, 1.0
    total = sum(abs(d) for d in jumps)
    if total == 0:
        return None, None
    j = max(range(len(jumps)), key=lambda i: abs(jumps[i]))
    return j, abs(jumps[j]) / total


def body_log_gain(cum: Sequence[float], steps: Sequence[StepFacts], body: tuple[int, int], n0: int) -> float | None:
    """Log RMS gain across the body, log(||J(0 -> e)||_F / ||J(0 -> s)||_F) (+ rank correction).

    s is the body's input state and e its output: the body's RMS gain over the directions that
    reach it from the chain's input, which is how the body acts on the signal the stem feeds it
    (exact for the body's own RMS gain when the stem's Jacobian is a multiple of an isometry). As for
    the end-to-end gain, an output narrower than the m = min(n0, n_s) directions that can reach the
    body is corrected by 0.5 log(m / n_e). None when the signal is already annihilated before the body.
    """
    first, last = body
    before = 0.0 if first == 0 else cum[first - 1]
    if not math.isfinite(before):
        return None
    m = min(n0, math.prod(steps[first].in_shape))
    return cum[last] - before + 0.5 * math.log(m / min(m, steps[last].n_out))


def explain(
    steps: Sequence[StepFacts],
    cum: Sequence[float],
    n0: int,
    killed: Sequence[int] = (),
    push_body: Callable[[int, int], float] | None = None,
) -> Drivers:
    """What drives the verdict of a probe.

    Args:
        steps: the differentiated steps, in order.
        cum: (L,) the cumulative log RMS gain through each step (`BlockStats.cum_log_rms`).
        n0: per-example size of the first differentiated state.
        killed: positions whose step annihilated the loss gradient for some example (from
            `gradient_log_ratios`).
        push_body: ``push_body(first, last)`` -> the body's own log RMS gain (`pushed_log_gain`),
            called only when a zero step before the body leaves the cumulative gain no jump to read.

    The notes explain what the fields cannot say alone: zero steps, gradients that stop, a body
    whose gain cannot be measured. The body's verdict and the dominant step are fields, which
    `depthscope.render._terminal.drivers_line` puts in words.
    """
    body = body_span(steps)
    b_gain = b_verdict = b_scale = None
    pushed = False
    if body is not None:
        b_gain = body_log_gain(cum, steps, body, n0)
        if b_gain is None and push_body is not None:
            b_gain, pushed = push_body(*body), True
        if b_gain is not None:
            b_verdict, b_scale = verdict(b_gain, body[1] - body[0] + 1)
    dom, share = dominant_step(step_log_gains(cum, steps, n0))
    zero = [j for j, s in enumerate(steps) if s.local_rms == 0.0]

    notes = []
    for j in zero:
        note = f"{steps[j].name!r} is zero (J = 0): the chain's output does not depend on its input"
        if j > 0:
            note += (
                "; no gradient of the loss reaches the steps before it (their grad ratios are for "
                "a random projection at its input)"
            )
        notes.append(note)
    for j in killed:
        if j not in zero and j > 0:
            notes.append(
                f"no gradient of the loss crosses {steps[j].name!r} for some examples; below it the "
                "grad ratios are for a random projection at its input"
            )
    if body is not None and (b_gain is None or pushed):
        how = "pushed from the body's own input" if pushed else "not measured"
        notes.append(f"the signal is annihilated before the body: its gain is {how}")
    return Drivers(body, b_gain, b_verdict, b_scale, dom, share, zero, notes)


def gradient_log_ratios(
    glog: torch.Tensor,
    apply_t: ApplyFn,
    ks: Sequence[int],
    in_shapes: Sequence[tuple[int, ...]],
    gen: torch.Generator,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, list[int]]:
    """Per-example log gradient ratios log(||dE/dx_k|| / ||dE/dx_{k+1}||), none undefined.

    Where a step annihilates the cotangent exactly (a zero-initialised head), dE/dx is zero at
    every state below it and the ratio there is 0/0. Those ratios are measured instead for a fresh
    random unit cotangent placed at that step's input (one direction for all examples, drawn from
    ``gen`` like the default loss), restarted below any further step that annihilates it: the gain
    of each step for a gradient arriving from above, which is what it sees once the zero step has
    learned. Ratios that were defined are kept; a step that annihilates the cotangent has ratio 0
    (log -inf).

    Args:
        glog: (L + 1, B) log ||dE/dx|| (natural log): row j at the input of step ks[j], row L at the output.
        apply_t: ``apply_t(k, U)`` = J_k^T U for ``U: (P, B, *S_{k+1})``.
        ks: the L differentiated step indices, in order.
        in_shapes: per-example input shape S_k of each of the L steps.
        gen: random source of the restarted cotangents.
        dtype: dtype of the restarted cotangents.

    Returns:
        (log ratios (L, B), positions j whose step annihilated the cotangent of some example).
    """
    log_r = glog[:-1] - glog[1:]
    dead = torch.isneginf(glog[:-1]) & ~torch.isneginf(glog[1:])
    killed = [j for j in range(len(ks)) if bool(dead[j].any())]
    undefined = torch.isnan(log_r)
    if not bool(undefined.any()):
        return log_r, killed
    # The highest undefined row lies just below the highest step that annihilated the cotangent.
    top = max(j for j in range(len(ks)) if bool(undefined[j].any())) + 1
    batch = glog.shape[1]

    def fresh(shape: tuple[int, ...]) -> torch.Tensor:
        g = torch.randn(shape, generator=gen, dtype=dtype)
        return (g / g.norm()).expand(1, batch, *shape)

    u = fresh(in_shapes[top])
    restarted = torch.empty_like(log_r[:top])
    for j in range(top - 1, -1, -1):
        w = apply_t(ks[j], u)
        norms = tangent_norms(w)[0]  # (B,); u has unit norm per example
        restarted[j] = torch.log(norms)
        zero = norms == 0
        if bool(zero.any()) and j not in killed:
            killed.append(j)
        safe = torch.where(zero, torch.ones_like(norms), norms).to(w.dtype)
        u = w / safe.reshape(1, batch, *([1] * (w.ndim - 2)))
        if j > 0 and bool(zero.any()):
            mask = zero.reshape(1, batch, *([1] * (w.ndim - 2)))
            u = torch.where(mask, fresh(in_shapes[j]).to(w.dtype), u)
    log_r[:top] = torch.where(undefined[:top], restarted, log_r[:top])
    return log_r, sorted(killed)


def pushed_log_gain(
    apply: ApplyFn,
    ks: Sequence[int],
    x: torch.Tensor,
    n_out: int,
    probes: int,
    gen: torch.Generator,
    dtype: torch.dtype,
) -> float:
    """Log RMS singular value of J(s -> e) = J_{ks[-1]} ... J_{ks[0]}, pushed from its input.

    Args:
        apply: ``apply(k, V)`` = J_k V for ``V: (P, B, *S_k)``.
        ks: the steps from s to e, in order.
        x: ``(B, *S_s)`` the state at s.
        n_out: per-example size of the state after ks[-1].
        probes: frame size K when S_s is wider than BODY_EXACT_MAX_DIM.
        gen, dtype: random source and dtype of the pushed tangents.

    With n = |S_s| <= BODY_EXACT_MAX_DIM the n basis vectors are pushed (exact); beyond, a random
    orthonormal frame of K columns, for which (n / K) ||J Q||_F^2 is an unbiased estimate of
    ||J||_F^2. As for the end-to-end gain, an output narrower than n is corrected by
    0.5 log(n / n_out). Returns the mean over examples of the per-example log (natural).
    """
    n = x[0].numel()
    if n <= BODY_EXACT_MAX_DIM:
        k = n
        v0 = torch.eye(n, dtype=dtype).unsqueeze(1).expand(n, x.shape[0], n).reshape(n, *x.shape)
    else:
        k = min(n, probes)
        v0 = random_frame(k, x.to(dtype), gen)
    last = push_log_norms(apply, ks, v0)[-1]  # (K, B)
    # ||J V||_F^2 / K estimates ||J||_F^2 / n: the RMS over K columns in place of n.
    log_rms = log_rms_from_columns(last, k, probes=False).mean(-1)
    return float(log_rms) + 0.5 * math.log(n / min(n, n_out))
