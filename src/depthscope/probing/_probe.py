"""`probe`: every per-step and end-to-end Jacobian quantity of a chain from a handful of passes."""

from __future__ import annotations

import math
import platform
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from depthscope._errors import InputError, NonFiniteError, check_count, check_seed
from depthscope._version import __version__
from depthscope.chain._batch import check_batch
from depthscope.chain._chain import Chain
from depthscope.estimators._linearized import LinearizedChain
from depthscope.estimators._local import LocalStats
from depthscope.estimators._lyapunov import benettin, random_frame
from depthscope.estimators._propagate import frame_log_rms, grow_frame, log_rms_from_columns, push_log_norms
from depthscope.probing import _routes
from depthscope.probing._report import BlockStats, Report
from depthscope.probing._verdict import (
    VERDICT_LOG_GAIN,
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
DEFAULT_PROBES = 16
DEFAULT_LYAPUNOV = 8

METHODS = ("auto", "explicit", "matrix-free")
# Modules whose training mode changes the function being measured.
STOCHASTIC_MODULES = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


class ProbeWarning(UserWarning):
    """Something the probe changed or could not do exactly; the message says what."""


@contextmanager
def _eval_mode(modules: list[nn.Module]) -> Iterator[None]:
    """Put modules whose training mode changes the function (BatchNorm, Dropout) into eval mode.

    A probe measures the network as it computes at inference: BatchNorm in train mode couples the
    examples of a batch and updates running statistics, Dropout makes the Jacobian random.
    """
    training = [m for root in modules for m in root.modules() if m.training and isinstance(m, STOCHASTIC_MODULES)]
    if not training:
        yield
        return
    kinds = sorted({type(m).__name__ for m in training})
    warnings.warn(
        f"{', '.join(kinds)} in training mode: probing in eval mode (the mode is restored afterwards)",
        ProbeWarning,
        stacklevel=4,
    )
    roots = [r for r in modules if r.training]
    for r in roots:
        r.eval()
    try:
        yield
    finally:
        for r in roots:
            r.train()


def _as_chain(model: nn.Module | Chain, x: torch.Tensor, blocks) -> Chain:
    if isinstance(model, Chain):
        return model
    if isinstance(model, nn.Module):
        return Chain.from_module(model, blocks, example=x)
    if isinstance(model, (list, tuple)):
        return Chain(model)
    raise InputError(f"probe takes an nn.Module, a Chain or a list of steps, not a {type(model).__name__}")


def probe(
    model: nn.Module | Chain,
    x: torch.Tensor,
    *,
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    probes: int = DEFAULT_PROBES,
    lyapunov: int | None = None,
    seed: int = 0,
    exact: bool = False,
    method: str = "auto",
    sigma_min: bool = True,
    blocks=None,
) -> Report:
    """Measure how signals and gradients cross every step of a model or chain.

    Args:
        model: an ``nn.Module`` (its blocks are found by `Chain.from_module`), or a `Chain`.
        x: input batch ``(B, *S_0)``; integer token ids are fine if a step turns them into floats
            (differentiation starts at the first floating-point state).
        loss: ``loss(output) -> scalar`` for the gradient quantities; by default the fixed random
            projection E = sum_b <output_b, g> with a unit g drawn from ``seed`` (needs no labels).
        probes: the least number of random tangents for the Hutchinson estimates of matrix-free
            steps, and the least size of the random frame that estimates cumulative norms of wide
            inputs; both get more where their spread says they are not yet precise (Accuracy).
        lyapunov: number of Lyapunov exponents (0 skips); at most the narrowest state's width per
            example (a larger number is cut to it with a `ProbeWarning`; ``settings["lyapunov"]``
            records the number computed). ``None``: DEFAULT_LYAPUNOV, or fewer on a narrower chain.
        seed: seeds every random choice; the same seed gives the same report.
        exact: build every Jacobian and use full SVDs and basis pushes (the tests' oracle; slow).
        method: route of the local statistics. "auto": per step, the route that the cost model of
            `depthscope.probing._routes` (calibrated by benchmarks/route_calibration.py) predicts
            faster for the step's size, the batch, the dtype, ``sigma_min`` and the step's Jacobian
            route; explicit only where its working set fits ``_routes.EXPLICIT_MEMORY_BUDGET``
            (explicit Jacobians are streamed, never all held at once). In practice explicit for
            narrow steps (up to ~128 wide at batch 1, ~48 at batch 8, classifier heads) and
            matrix-free for wider ones; on benchmarks/probe_vs_exact.py's cases and resnet56 it was
            within 2% of the faster forced route. "explicit" or "matrix-free" force one route. The
            routes taken and why: ``settings["local_routes"]``, ``settings["local_route_reasons"]``.
        sigma_min: also compute sigma_min and ||J - I||_2 of square steps (two more Lanczos runs
            per step); ``False`` leaves them None. Measured cost at one thread, batch 1 (defaults
            otherwise): +13% on a 64-block width-256 residual MLP, +56% at width 1024, +24% on
            resnet56 (benchmarks/route_calibration.py --whole).
        blocks: passed to `Chain.from_module`.

    Returns:
        a `Report`. Convention: every quantity is computed per example (the Jacobian of example b's
        output with respect to example b's input); local statistics are arithmetic means over the
        batch, log quantities (cum_log_fro, grad_log_norm, log_gain, Lyapunov exponents) are means
        of the per-example logs, and grad_ratio is exp of the mean per-example log ratio.

    Accuracy (errors against ``exact=True`` over 5 seeds on a ViT, GPT-2 and a Llama built from
    small configs and torchvision's ViT and resnet18, random weights:
    benchmarks/accuracy_real_models.py): local_fro is exact on explicit steps; on matrix-free steps
    Hutchinson probes are added (up to 256) until the estimated relative standard error is at most
    2%, and that standard error is reported as ``local_fro_se``: median error 0.1-0.4%, largest
    3.4%, within 3.2 reported standard errors (torchvision's ViT, first layer sigma_max / rms 19:
    1.6%, where 16 fixed probes were up to 17% off). sigma_max, sigma_min and the identity gap are exact (full SVD) on explicit steps up to
    256 wide; wider explicit steps run Lanczos to a 1e-4 residual (GPT-2's 512-wide steps within
    1e-6; at the former 1% residual, 1.4% low when the top singular values are 1% apart:
    tests/probing/test_accuracy.py); matrix-free Lanczos stops at a 1% residual: median 0.02%,
    largest 0.4% on the transformers and 1.7% on a resnet18 convolutional step (CIFAR ResNets:
    benchmarks/lanczos_accuracy.py). cum_log_fro is exact for inputs up to 256 wide and log_gain
    also when the output is; otherwise a random frame of at least ``probes`` columns grows (up to
    128) until the standard error of every estimated cum_log_fro is at most 0.025, reported as
    ``cum_log_fro_se``: median error 0.003-0.03, largest 0.05 (Llama, whose frame stops at the
    cap with standard errors up to 0.03), within 2.5 reported standard errors. Tape and autograd
    routes agree to rounding (tests/estimators).

    Raises:
        InputError: wrong input shape/dtype for the model (an empty batch, a 1-D or meta-device x),
            nothing differentiable, bad arguments (a non-integer count, a seed outside [0, 2**64)).
        NonFiniteError: a NaN/Inf appears in a state or a step's Jacobian; the error names the step.
        ChainError: a step mixes the examples of the batch (named), a TorchScript model.
        NoBlocksError: no block sequence could be found in the module.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    probes = check_count("probes", probes, 1)
    lyapunov = None if lyapunov is None else check_count("lyapunov", lyapunov, 0)
    seed = check_seed(seed)
    check_batch(x)
    modules = [model] if isinstance(model, nn.Module) else []
    with _eval_mode(modules):
        chain = _as_chain(model, x, blocks)
        with _eval_mode(chain.modules() if not modules else []):
            return _probe_chain(chain, x, loss, probes, lyapunov, seed, exact, method, sigma_min)


def _probe_chain(chain, x, loss, probes, n_lyap, seed, exact, method, with_min) -> Report:
    gen = torch.Generator().manual_seed(seed)
    lin = LinearizedChain(chain, x)
    # A frame cannot hold more directions than the narrowest state has (per example).
    narrowest = min(lin.n_in[lin.start], *lin.n_out.values())
    if n_lyap is None:
        n_lyap = min(DEFAULT_LYAPUNOV, narrowest)
    elif n_lyap > narrowest:
        warnings.warn(
            f"lyapunov={n_lyap} exceeds the narrowest state along the chain ({narrowest} values "
            f"per example): computing {narrowest} exponents",
            ProbeWarning,
            stacklevel=3,
        )
        n_lyap = narrowest
    # Everything below applies recorded Jacobians to tangents: no graph is needed (the autograd
    # route differentiates graphs it already holds, which works in no-grad mode).
    with torch.no_grad():
        return _measure(chain, lin, loss, probes, n_lyap, gen, seed, exact, method, with_min)


def _measure(chain, lin, loss, probes, n_lyap, gen, seed, exact, method, with_min) -> Report:
    ks = lin.steps
    dtype = lin.states[lin.start].dtype

    # Per step the route the cost model predicts faster (`_routes`); explicit Jacobians are streamed,
    # and `explicit` keeps (float64) those of them that fit the memory budget for the sweeps below.
    routes = _routes.plan(lin, "explicit" if exact else method, probes, with_min)
    local: dict[int, LocalStats]
    local, explicit = _routes.local_stats(lin, routes, probes, gen, exact, with_min)

    def apply(k: int, v: torch.Tensor) -> torch.Tensor:
        if k in explicit:
            J = explicit[k]
            out = torch.einsum("bij,pbj->pbi", J, v.reshape(v.shape[0], v.shape[1], -1).to(J.dtype))
            return out.reshape(v.shape[0], *lin.states[k + 1].shape).to(v.dtype)
        return lin.jvp(k, v.to(dtype)).to(v.dtype)

    def apply_t(k: int, u: torch.Tensor) -> torch.Tensor:
        if k in explicit:
            J = explicit[k]
            out = torch.einsum("bij,pbi->pbj", J, u.reshape(u.shape[0], u.shape[1], -1).to(J.dtype))
            return out.reshape(u.shape[0], *lin.states[k].shape).to(u.dtype)
        return lin.vjp(k, u.to(dtype)).to(u.dtype)

    # Cumulative RMS gain of J(0 -> k) for every k, and Lyapunov exponents, from forward sweeps.
    # A wide input shares one sweep: a Haar-random frame of K orthonormal directions is pushed with
    # Benettin's QR, its top directions give the exponents and the product of its triangular factors
    # gives ||J(0 -> k) Q_0||_F, whose (n_0 / K)-scaled square is an unbiased estimate of
    # ||J(0 -> k)||_F^2 (exact when K = n_0). A narrow input pushes its n_0 basis vectors instead.
    x0 = lin.states[lin.start]
    n0 = x0[0].numel()
    cum_exact = exact or n0 <= EXACT_CUMULATIVE_MAX_DIM
    # Exact basis pushes run in float64; the random frame in the model's precision (its logs and
    # triangular factors are accumulated in float64 by `benettin`).
    work = torch.float64 if cum_exact else dtype
    k_lyap = min(n_lyap, n0, *(lin.n_out[k] for k in ks))
    frame = k_lyap if cum_exact else min(n0, max(probes, k_lyap))
    pushed = None
    if frame > 0:
        pushed = benettin(
            apply, ks, random_frame(frame, x0.to(work), gen), lin.n_out, frame_norms=not cum_exact, report=k_lyap
        )
    lyap: list[float] = pushed.exponents.tolist() if n_lyap > 0 else []
    nL = lin.states[-1][0].numel()
    narrow_out = not cum_exact and nL <= EXACT_CUMULATIVE_MAX_DIM
    cum_se = torch.zeros(len(ks), dtype=torch.float64)
    if cum_exact:
        v0 = torch.eye(n0, dtype=work).unsqueeze(1).expand(n0, lin.batch, n0).reshape(n0, *x0.shape)
        cum = log_rms_from_columns(push_log_norms(apply, ks, v0)[1:], n0, probes=False).mean(-1)  # (L,)
    elif frame == n0:  # the frame is a whole orthonormal basis: exact
        cum = (pushed.log_frame_norms - 0.5 * math.log(frame)).mean(-1)
    else:
        # More columns where the frame's spread says the estimate is not yet precise (`grow_frame`).
        cols = grow_frame(apply, ks, x0.to(work), pushed.log_column_norms, gen, skip_last=narrow_out)
        frame = cols.shape[1]
        cum, cum_se = frame_log_rms(cols)

    # Gradients from one backward sweep. A narrow output (a classifier head) makes J(0 -> L)
    # low-rank, the frame estimate's worst case; its Frobenius norm is then exact from n_L basis
    # cotangents swept backwards in the same sweep: ||J^T||_F = ||J||_F.
    g_last = _loss_gradient(lin.states[-1], loss, gen)
    cots = [g_last.unsqueeze(0).to(work)]
    if narrow_out:
        xL = lin.states[-1]
        cots.append(torch.eye(nL, dtype=work).unsqueeze(1).expand(nL, lin.batch, nL).reshape(nL, *xL.shape))
    rows = push_log_norms(apply_t, ks[::-1], torch.cat(cots))  # (L + 1, 1 + nL, B), from the output back
    glog = rows[:, 0].flip(0)  # (L + 1, B): row j is log ||dE/dx_{start + j}||
    if narrow_out:
        cum[-1] = log_rms_from_columns(rows[-1, 1:], n0, probes=False).mean(-1)
        cum_se[-1] = 0.0
    end_to_end_exact = cum_exact or narrow_out
    grad_log = glog.mean(-1)
    # A zero step (a zero-initialised head) leaves 0/0 ratios below it: they are measured for a
    # random projection at its input instead (`gradient_log_ratios`).
    in_shapes = [tuple(lin.states[k].shape[1:]) for k in ks]
    log_ratio, killed = gradient_log_ratios(glog, apply_t, ks, in_shapes, gen, work)
    grad_ratio = log_ratio.mean(-1).exp()

    # The end-to-end gain is the RMS over the min(n0, nL) singular values that can be nonzero, so a
    # head that projects to 10 classes is not counted as vanishing merely for its shape.
    log_gain = float(cum[-1]) + 0.5 * math.log(n0 / min(n0, nL))
    v, scale = verdict(log_gain, len(ks))
    # What drives it: the body apart from stem and head, the dominant step, zero steps.
    facts = [
        StepFacts(
            chain.steps[k].name,
            k,
            in_shapes[j],
            tuple(lin.states[k + 1].shape[1:]),
            is_norm_module(chain.steps[k].module),
            local[k].fro,
        )
        for j, k in enumerate(ks)
    ]

    def push_body(first: int, last: int) -> float:  # only when a zero step precedes the body
        body = ks[first : last + 1]
        return pushed_log_gain(apply, body, lin.states[body[0]].to(work), lin.n_out[body[-1]], probes, gen, work)

    drivers = explain(facts, cum.tolist(), n0, killed, push_body)

    blocks = []
    for j, k in enumerate(ks):
        st = local[k]
        blocks.append(
            BlockStats(
                name=chain.steps[k].name,
                index=k,
                in_shape=tuple(lin.states[k].shape[1:]),
                out_shape=tuple(lin.states[k + 1].shape[1:]),
                local_fro=st.fro,
                local_fro_se=st.fro_se,
                local_sigma_max=st.sigma_max,
                local_sigma_min=st.sigma_min,
                identity_gap=st.identity_gap,
                cum_log_fro=float(cum[j]),
                cum_log_fro_se=float(cum_se[j]),
                grad_log_norm=float(grad_log[j]),
                grad_ratio=float(grad_ratio[j]),
                method=st.method,
                sigma_min_kind=st.sigma_min_kind,
            )
        )
    settings = dict(
        probes=probes,
        lyapunov=n_lyap,
        seed=seed,
        exact=exact,
        method=method,
        sigma_min=with_min,
        cumulative="exact" if cum_exact else f"frame({frame})",
        end_to_end="exact" if end_to_end_exact else f"frame({frame})",
        batch=lin.batch,
        dtype=str(dtype).replace("torch.", ""),
        skipped_prefix=[s.name for s in chain.steps[: lin.start]],
        loss="custom" if loss is not None else "random-projection",
        verdict_log_gain=VERDICT_LOG_GAIN,
        local_route_model=_routes.MODEL_DESCRIPTION,
        explicit_memory_budget=_routes.EXPLICIT_MEMORY_BUDGET,
        local_routes=_routes.summary(routes)[0],
        local_route_reasons=_routes.summary(routes)[1],
        jacobian_routes={r: sum(1 for k in ks if lin.route(k) == r) for r in sorted(set(lin.routes.values()))},
        autograd_reasons={chain.steps[k].name: why for k, why in lin.route_reasons.items()},
    )
    versions = dict(depthscope=__version__, torch=torch.__version__, python=platform.python_version())
    return Report(
        blocks,
        lyap,
        log_gain,
        v,
        scale,
        float(glog[0].mean()),
        settings,
        versions,
        body_span=None if drivers.body is None else [ks[i] for i in drivers.body],
        body_log_gain=drivers.body_log_gain,
        body_verdict=drivers.body_verdict,
        body_depth_scale=drivers.body_depth_scale,
        dominant_step=None if drivers.dominant is None else facts[drivers.dominant].name,
        dominant_share=drivers.dominant_share,
        zero_steps=[facts[j].name for j in drivers.zero_steps],
        notes=drivers.notes,
    )


def _loss_gradient(out: torch.Tensor, loss, gen: torch.Generator) -> torch.Tensor:
    """dE/d output ``(B, *S_L)``."""
    if loss is None:
        g = torch.randn(out[0].shape, generator=gen, dtype=out.dtype)
        return (g / g.norm()).expand_as(out).clone()
    leaf = out.detach().requires_grad_(True)
    with torch.enable_grad():
        e = loss(leaf)
    if not isinstance(e, torch.Tensor) or e.numel() != 1:
        raise InputError("loss(output) must return a scalar tensor")
    if not torch.isfinite(e):
        raise NonFiniteError("the loss is NaN/Inf at the chain's output", step=-1, step_name="loss")
    if not e.requires_grad:
        raise InputError("loss(output) does not depend differentiably on the output")
    (g,) = torch.autograd.grad(e, leaf)
    return g
