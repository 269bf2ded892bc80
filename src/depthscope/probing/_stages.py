"""The probe's stages, in the order they run and draw random numbers from the one generator.

1. `measure_local`: every step's local statistics by its route (`_routes`).
2. `measure_cumulative`: cumulative log RMS gains of J(0 -> k) and the Lyapunov exponents, from
   forward sweeps of basis columns or of one shared random frame.
3. `measure_gradients`: loss gradients at every state from one backward sweep, their ratios, and
   the exact end-to-end gain of a narrow output from the same sweep.
4. `judge`: the end-to-end gain, its verdict and what drives it (`_verdict`).

Every stage takes the `LinearizedChain` and the `ProbeOptions` whole and returns a frozen record;
`depthscope.probing._probe` runs them and assembles the report. Notation: L differentiated steps
``lin.steps``, B examples, n0 and nL the per-example sizes of the first differentiated state and of
the output. All logs are natural.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from depthscope._errors import InputError, NonFiniteError
from depthscope.chain import Chain
from depthscope.estimators import (
    LinearizedChain,
    LocalStats,
    benettin,
    frame_log_rms,
    grow_frame,
    log_rms_from_columns,
    push_log_norms,
    random_frame,
)
from depthscope.probing import _routes
from depthscope.probing._options import ProbeOptions
from depthscope.probing._verdict import (
    Drivers,
    StepFacts,
    explain,
    gradient_log_ratios,
    is_norm_module,
    pushed_log_gain,
    verdict,
)

# Exact cumulative norms push n_0 basis columns through every step; beyond this input width the
# random frame shared with the Lyapunov exponents (max(probes, lyapunov) directions) is cheaper.
EXACT_CUMULATIVE_MAX_DIM = 256


class Operators:
    """J_k V and J_k^T U for the sweeps: by the kept explicit Jacobian where there is one (float64,
    a dense product), else through `LinearizedChain.jvp` / `vjp` in the model's dtype.

    ``apply(k, V)`` takes ``V: (P, B, *S_k)`` and returns ``(P, B, *S_{k+1})`` in V's dtype;
    ``apply_t(k, U)`` the reverse.
    """

    def __init__(self, lin: LinearizedChain, explicit: dict[int, torch.Tensor]) -> None:
        self.lin = lin
        self.explicit = explicit  # {k: (B, n_out, n_in) float64}
        self.dtype = lin.states[lin.start].dtype

    def apply(self, k: int, v: torch.Tensor) -> torch.Tensor:
        if k in self.explicit:
            J = self.explicit[k]
            out = torch.einsum("bij,pbj->pbi", J, v.reshape(v.shape[0], v.shape[1], -1).to(J.dtype))
            return out.reshape(v.shape[0], *self.lin.states[k + 1].shape).to(v.dtype)
        return self.lin.jvp(k, v.to(self.dtype)).to(v.dtype)

    def apply_t(self, k: int, u: torch.Tensor) -> torch.Tensor:
        if k in self.explicit:
            J = self.explicit[k]
            out = torch.einsum("bij,pbi->pbj", J, u.reshape(u.shape[0], u.shape[1], -1).to(J.dtype))
            return out.reshape(u.shape[0], *self.lin.states[k].shape).to(u.dtype)
        return self.lin.vjp(k, u.to(self.dtype)).to(u.dtype)


@dataclass(frozen=True)
class Local:
    """Stage 1. ``routes[k]``: (route, reason); ``stats[k]``: the step's `LocalStats` (batch means);
    ``ops``: the sweeps' operators, holding the float64 explicit Jacobians that fit the keep budget."""

    routes: dict[int, tuple[str, str]]
    stats: dict[int, LocalStats]
    ops: Operators


def measure_local(lin: LinearizedChain, opts: ProbeOptions, gen: torch.Generator) -> Local:
    """Every step's local statistics, each by the route the cost model predicts faster (`_routes`);
    explicit Jacobians are streamed, and those that fit the memory budget are kept for the sweeps."""
    routes = _routes.plan(lin, opts.route_method, opts.probes, opts.sigma_min)
    stats, explicit = _routes.local_stats(lin, routes, opts.probes, gen, opts.exact, opts.sigma_min)
    return Local(routes, stats, Operators(lin, explicit))


@dataclass(frozen=True)
class Cumulative:
    """Stage 2.

    Attributes:
        log_rms: (L,) float64, log RMS singular value of J(0 -> k+1) per step (batch mean).
        log_rms_se: (L,) float64, its standard error (0 where exact).
        lyapunov: the top exponents per step, descending ([] when none were asked for).
        exact: the cumulative gains are exact (basis columns, or a frame that is a whole basis).
        frame: columns of the random frame pushed (its final size after growing).
        work: dtype of the pushed tangents (float64 for exact basis pushes).
        n0, nL: per-example sizes of the first differentiated state and of the output.
        narrow_out: the end-to-end gain is estimated by a frame but the output is narrow enough
            for its exact value from nL basis cotangents (`measure_gradients`).
    """

    log_rms: torch.Tensor
    log_rms_se: torch.Tensor
    lyapunov: list[float]
    exact: bool
    frame: int
    work: torch.dtype
    n0: int
    nL: int
    narrow_out: bool


def measure_cumulative(lin: LinearizedChain, opts: ProbeOptions, ops: Operators, gen: torch.Generator) -> Cumulative:
    """Cumulative RMS gain of J(0 -> k) for every k, and the Lyapunov exponents, from forward sweeps.

    A wide input shares one sweep: a Haar-random frame of K orthonormal directions is pushed with
    Benettin's QR, its top directions give the exponents and the product of its triangular factors
    gives ||J(0 -> k) Q_0||_F, whose (n_0 / K)-scaled square is an unbiased estimate of
    ||J(0 -> k)||_F^2 (exact when K = n_0). A narrow input pushes its n_0 basis vectors instead.
    ``opts.lyapunov`` must be resolved (an int).
    """
    ks = lin.steps
    dtype = lin.states[lin.start].dtype
    n_lyap = opts.lyapunov
    x0 = lin.states[lin.start]
    n0 = x0[0].numel()
    cum_exact = opts.exact or n0 <= EXACT_CUMULATIVE_MAX_DIM
    # Exact basis pushes run in float64; the random frame in the model's precision (its logs and
    # triangular factors are accumulated in float64 by `benettin`).
    work = torch.float64 if cum_exact else dtype
    k_lyap = min(n_lyap, n0, *(lin.n_out[k] for k in ks))
    frame = k_lyap if cum_exact else min(n0, max(opts.probes, k_lyap))
    pushed = None
    if frame > 0:
        pushed = benettin(
            ops.apply, ks, random_frame(frame, x0.to(work), gen), lin.n_out, frame_norms=not cum_exact, report=k_lyap
        )
    lyap: list[float] = pushed.exponents.tolist() if n_lyap > 0 else []
    nL = lin.states[-1][0].numel()
    narrow_out = not cum_exact and nL <= EXACT_CUMULATIVE_MAX_DIM
    cum_se = torch.zeros(len(ks), dtype=torch.float64)
    if cum_exact:
        v0 = torch.eye(n0, dtype=work).unsqueeze(1).expand(n0, lin.batch, n0).reshape(n0, *x0.shape)
        cum = log_rms_from_columns(push_log_norms(ops.apply, ks, v0)[1:], n0, probes=False).mean(-1)  # (L,)
    elif frame == n0:  # the frame is a whole orthonormal basis: exact
        cum = (pushed.log_frame_norms - 0.5 * math.log(frame)).mean(-1)
    else:
        # More columns where the frame's spread says the estimate is not yet precise (`grow_frame`).
        cols = grow_frame(ops.apply, ks, x0.to(work), pushed.log_column_norms, gen, skip_last=narrow_out)
        frame = cols.shape[1]
        cum, cum_se = frame_log_rms(cols)
    return Cumulative(
        log_rms=cum,
        log_rms_se=cum_se,
        lyapunov=lyap,
        exact=cum_exact,
        frame=frame,
        work=work,
        n0=n0,
        nL=nL,
        narrow_out=narrow_out,
    )


@dataclass(frozen=True)
class Gradients:
    """Stage 3.

    Attributes:
        glog: (L + 1, B) per-example log ||dE/dx||: row j at the input of step ks[j], row L at the output.
        log_ratio: (L, B) per-example log gradient ratios, none undefined (`gradient_log_ratios`).
        killed: positions whose step annihilated the loss gradient for some example.
        cumulative: stage 2's record, its last entry exact where the output is narrow.
    """

    glog: torch.Tensor
    log_ratio: torch.Tensor
    killed: list[int]
    cumulative: Cumulative

    @property
    def end_to_end_exact(self) -> bool:
        """Whether ``cumulative.log_rms[-1]`` (the end-to-end gain) is exact."""
        return self.cumulative.exact or self.cumulative.narrow_out


def measure_gradients(
    lin: LinearizedChain, opts: ProbeOptions, ops: Operators, cum: Cumulative, gen: torch.Generator
) -> Gradients:
    """Gradients from one backward sweep.

    A narrow output (a classifier head) makes J(0 -> L) low-rank, the frame estimate's worst case;
    its Frobenius norm is then exact from n_L basis cotangents swept backwards in the same sweep:
    ||J^T||_F = ||J||_F. A zero step (a zero-initialised head) leaves 0/0 ratios below it: they are
    measured for a random projection at its input instead (`gradient_log_ratios`).
    """
    ks = lin.steps
    work, nL = cum.work, cum.nL
    g_last = loss_gradient(lin.states[-1], opts, gen)
    cots = [g_last.unsqueeze(0).to(work)]
    if cum.narrow_out:
        xL = lin.states[-1]
        cots.append(torch.eye(nL, dtype=work).unsqueeze(1).expand(nL, lin.batch, nL).reshape(nL, *xL.shape))
    rows = push_log_norms(ops.apply_t, ks[::-1], torch.cat(cots))  # (L + 1, 1 + nL, B), from the output back
    glog = rows[:, 0].flip(0)  # (L + 1, B): row j is log ||dE/dx_{start + j}||
    if cum.narrow_out:
        log_rms, log_rms_se = cum.log_rms.clone(), cum.log_rms_se.clone()
        log_rms[-1] = log_rms_from_columns(rows[-1, 1:], cum.n0, probes=False).mean(-1)
        log_rms_se[-1] = 0.0
        cum = replace(cum, log_rms=log_rms, log_rms_se=log_rms_se)
    in_shapes = [tuple(lin.states[k].shape[1:]) for k in ks]
    log_ratio, killed = gradient_log_ratios(glog, ops.apply_t, ks, in_shapes, gen, work)
    return Gradients(glog, log_ratio, killed, cum)


def loss_gradient(out: torch.Tensor, opts: ProbeOptions, gen: torch.Generator) -> torch.Tensor:
    """dE/d output ``(B, *S_L)``: of ``opts.loss``, or of a fixed random unit projection drawn from ``gen``."""
    if opts.loss is None:
        g = torch.randn(out[0].shape, generator=gen, dtype=out.dtype)
        return (g / g.norm()).expand_as(out).clone()
    leaf = out.detach().requires_grad_(True)
    with torch.enable_grad():
        e = opts.loss(leaf)
    if not isinstance(e, torch.Tensor) or e.numel() != 1:
        raise InputError("loss(output) must return a scalar tensor")
    if not torch.isfinite(e):
        raise NonFiniteError("the loss is NaN/Inf at the chain's output", step=-1, step_name="loss")
    if not e.requires_grad:
        raise InputError("loss(output) does not depend differentiably on the output")
    (g,) = torch.autograd.grad(e, leaf)
    return g


@dataclass(frozen=True)
class Judgement:
    """Stage 4. ``log_gain``: end-to-end log RMS gain over the min(n0, nL) singular values that can be
    nonzero; ``verdict``, ``depth_scale``: `verdict` of it; ``facts``: one `StepFacts` per step;
    ``drivers``: what drives the verdict (positions index ``facts``)."""

    log_gain: float
    verdict: str
    depth_scale: float
    facts: list[StepFacts]
    drivers: Drivers


def judge(
    chain: Chain,
    lin: LinearizedChain,
    opts: ProbeOptions,
    local: Local,
    grads: Gradients,
    gen: torch.Generator,
) -> Judgement:
    """The end-to-end verdict and what drives it: the body apart from stem and head, the dominant
    step, zero steps.

    The end-to-end gain is the RMS over the min(n0, nL) singular values that can be nonzero, so a
    head that projects to 10 classes is not counted as vanishing merely for its shape.
    """
    ks = lin.steps
    cum = grads.cumulative
    n0, nL, work = cum.n0, cum.nL, cum.work
    log_gain = float(cum.log_rms[-1]) + 0.5 * math.log(n0 / min(n0, nL))
    v, scale = verdict(log_gain, len(ks))
    facts = [
        StepFacts(
            chain.steps[k].name,
            k,
            tuple(lin.states[k].shape[1:]),
            tuple(lin.states[k + 1].shape[1:]),
            is_norm_module(chain.steps[k].module),
            local.stats[k].fro,
        )
        for k in ks
    ]

    def push_body(first: int, last: int) -> float:  # only when a zero step precedes the body
        body = ks[first : last + 1]
        return pushed_log_gain(
            local.ops.apply, body, lin.states[body[0]].to(work), lin.n_out[body[-1]], opts.probes, gen, work
        )

    drivers = explain(facts, cum.log_rms.tolist(), n0, grads.killed, push_body)
    return Judgement(log_gain, v, scale, facts, drivers)
