"""`probe`: every per-step and end-to-end Jacobian quantity of a chain from a handful of passes."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import nn

from depthscope._errors import InputError
from depthscope._version import runtime_versions
from depthscope.chain import Chain, check_batch
from depthscope.estimators import LinearizedChain
from depthscope.probing import _routes
from depthscope.probing._options import DEFAULT_LYAPUNOV, DEFAULT_PROBES, ProbeOptions
from depthscope.probing._quantities import QUANTITIES, StepRecord
from depthscope.probing._report import BlockStats, Report
from depthscope.probing._stages import (
    Gradients,
    Judgement,
    Local,
    judge,
    measure_cumulative,
    measure_gradients,
    measure_local,
)
from depthscope.probing._verdict import VERDICT_LOG_GAIN
from depthscope.probing._warning import ProbeWarning

# Modules whose training mode changes the function being measured.
STOCHASTIC_MODULES = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


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


def _as_chain(model: nn.Module | Chain, x: torch.Tensor, blocks, attention_mask: torch.Tensor | None) -> Chain:
    if isinstance(model, nn.Module):
        return Chain.from_module(model, blocks, example=x, attention_mask=attention_mask)
    if attention_mask is not None and isinstance(model, (Chain, list, tuple)):
        raise InputError(
            "attention_mask is bound when a chain is built from a model: pass the model itself to probe, or "
            "build the chain with Chain.from_module(model, example=x, attention_mask=mask) or Chain.from_hf"
        )
    if isinstance(model, Chain):
        return model
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
    attention_mask: torch.Tensor | None = None,
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
        attention_mask: passed to `Chain.from_module`, which passes it to the model on every call:
            for a Hugging Face model ``(B, T)`` like ``x``'s token ids, 1 for real tokens and 0 for
            padding (None: every token real). Only with an ``nn.Module`` (a `Chain` is already
            bound to its mask); a model that takes none, or a mask of the wrong shape, raises
            `InputError`.

    Returns:
        a `Report`. Convention: every quantity is computed per example (the Jacobian of example b's
        output with respect to example b's input); local statistics are arithmetic means over the
        batch, log quantities (cum_log_rms, grad_log_norm, log_gain, Lyapunov exponents) are means
        of the per-example logs, and grad_ratio is exp of the mean per-example log ratio.

    Accuracy (errors against ``exact=True`` over 5 seeds on a ViT, GPT-2 and a Llama built from
    small configs and torchvision's ViT and resnet18, random weights:
    benchmarks/accuracy_real_models.py): local_rms is exact on explicit steps; on matrix-free steps
    Hutchinson probes are added (up to 256) until the estimated relative standard error is at most
    2%, and that standard error is reported as ``local_rms_se``: median error 0.1-0.4%, largest
    3.4%, within 3.2 reported standard errors (torchvision's ViT, first layer sigma_max / rms 19:
    1.6%, where 16 fixed probes were up to 17% off). sigma_max, sigma_min and the identity gap
    are exact (full SVD) on explicit steps up to 256 wide; wider explicit steps run Lanczos to a
    1e-4 residual (GPT-2's 512-wide steps within 1e-6; at the former 1% residual, 1.4% low when
    the top singular values are 1% apart: tests/probing/test_accuracy.py); matrix-free Lanczos
    stops at a 1.5% residual: median 0.06% at most, largest 0.7% on the transformers and 1.8% on
    a resnet18 convolutional step
    (against a converged reference at 64-112 px: medians 0.07-0.19%, largest 1.6%,
    benchmarks/lanczos_accuracy.py). cum_log_rms is exact for inputs up to 256 wide and log_gain
    also when the output is; otherwise a random frame of at least ``probes`` columns grows (up to
    128) until the standard error of every estimated cum_log_rms is at most 0.025, reported as
    ``cum_log_rms_se``: median error 0.003-0.03, largest 0.05 (Llama, whose frame stops at the
    cap with standard errors up to 0.03), within 2.5 reported standard errors. Tape and autograd
    routes agree to rounding (tests/estimators).

    Raises:
        InputError: wrong input shape/dtype for the model (an empty batch, a 1-D or meta-device x),
            nothing differentiable, bad arguments (a non-integer count, a seed outside [0, 2**64)).
        NonFiniteError: a NaN/Inf appears in a state or a step's Jacobian; the error names the step.
        ChainError: a step mixes the examples of the batch (named), a TorchScript model.
        NoBlocksError: no block sequence could be found in the module.
    """
    opts = ProbeOptions(
        probes=probes, lyapunov=lyapunov, seed=seed, exact=exact, method=method, sigma_min=sigma_min, loss=loss
    )
    check_batch(x)
    modules = [model] if isinstance(model, nn.Module) else []
    with _eval_mode(modules):
        chain = _as_chain(model, x, blocks, attention_mask)
        with _eval_mode(chain.modules() if not modules else []):
            return _probe_chain(chain, x, opts, masked=attention_mask is not None)


def _probe_chain(chain: Chain, x: torch.Tensor, opts: ProbeOptions, masked: bool = False) -> Report:
    """Linearise ``chain`` at ``x``, fix the number of Lyapunov exponents, and run the stages."""
    gen = torch.Generator().manual_seed(opts.seed)
    lin = LinearizedChain(chain, x)
    opts = replace(opts, lyapunov=_lyapunov_count(lin, opts.lyapunov))
    # Everything below applies recorded Jacobians to tangents: no graph is needed (the autograd
    # route differentiates graphs it already holds, which works in no-grad mode).
    with torch.no_grad():
        local = measure_local(lin, opts, gen)
        cumulative = measure_cumulative(lin, opts, local.ops, gen)
        grads = measure_gradients(lin, opts, local.ops, cumulative, gen)
        judgement = judge(chain, lin, opts, local, grads, gen)
    return _assemble(chain, lin, opts, local, grads, judgement, masked)


def _lyapunov_count(lin: LinearizedChain, asked: int | None) -> int:
    """Exponents to compute: ``asked`` (None: DEFAULT_LYAPUNOV) cut to the narrowest state along
    the chain, since a frame cannot hold more directions than it has values per example."""
    narrowest = min(lin.n_in[lin.start], *lin.n_out.values())
    if asked is None:
        return min(DEFAULT_LYAPUNOV, narrowest)
    if asked > narrowest:
        warnings.warn(
            f"lyapunov={asked} exceeds the narrowest state along the chain ({narrowest} values "
            f"per example): computing {narrowest} exponents",
            ProbeWarning,
            stacklevel=4,
        )
        return narrowest
    return asked


def _assemble(
    chain: Chain,
    lin: LinearizedChain,
    opts: ProbeOptions,
    local: Local,
    grads: Gradients,
    judgement: Judgement,
    masked: bool,
) -> Report:
    """The `Report`: one `BlockStats` per step, each field measured as its quantity declares
    (`QUANTITIES`) from the step's `StepRecord`; the settings that say how it was measured."""
    ks = lin.steps
    cum = grads.cumulative
    grad_log = grads.glog.mean(-1)  # (L + 1,)
    grad_ratio = grads.log_ratio.mean(-1).exp()  # (L,)
    blocks = []
    for j, k in enumerate(ks):
        record = StepRecord(
            name=chain.steps[k].name,
            index=k,
            in_shape=tuple(lin.states[k].shape[1:]),
            out_shape=tuple(lin.states[k + 1].shape[1:]),
            local=local.stats[k],
            cum_log_rms=float(cum.log_rms[j]),
            cum_log_rms_se=float(cum.log_rms_se[j]),
            grad_log_norm=float(grad_log[j]),
            grad_ratio=float(grad_ratio[j]),
        )
        blocks.append(BlockStats(**{q.name: q.measure(record) for q in QUANTITIES}))
    frame = f"frame({cum.frame})"
    dtype = lin.states[lin.start].dtype
    route_counts, route_reasons = _routes.summary(local.routes)
    settings = dict(
        probes=opts.probes,
        lyapunov=opts.lyapunov,
        seed=opts.seed,
        exact=opts.exact,
        method=opts.method,
        sigma_min=opts.sigma_min,
        cumulative="exact" if cum.exact else frame,
        end_to_end="exact" if grads.end_to_end_exact else frame,
        batch=lin.batch,
        dtype=str(dtype).replace("torch.", ""),
        skipped_prefix=[s.name for s in chain.steps[: lin.start]],
        attention_mask=masked,  # the chain was bound to an attention mask
        loss="custom" if opts.loss is not None else "random-projection",
        verdict_log_gain=VERDICT_LOG_GAIN,
        local_route_model=_routes.MODEL_DESCRIPTION,
        explicit_memory_budget=_routes.EXPLICIT_MEMORY_BUDGET,
        local_routes=route_counts,
        local_route_reasons=route_reasons,
        jacobian_routes={r: sum(1 for k in ks if lin.route(k) == r) for r in sorted(set(lin.routes.values()))},
        autograd_reasons={chain.steps[k].name: why for k, why in lin.route_reasons.items()},
    )
    versions = runtime_versions(numpy=False)
    drivers, facts = judgement.drivers, judgement.facts
    return Report(
        blocks=blocks,
        lyapunov=cum.lyapunov,
        log_gain=judgement.log_gain,
        verdict=judgement.verdict,
        depth_scale=judgement.depth_scale,
        input_grad_log_norm=float(grads.glog[0].mean()),
        settings=settings,
        versions=versions,
        body_span=None if drivers.body is None else [ks[i] for i in drivers.body],
        body_log_gain=drivers.body_log_gain,
        body_verdict=drivers.body_verdict,
        body_depth_scale=drivers.body_depth_scale,
        dominant_step=None if drivers.dominant is None else facts[drivers.dominant].name,
        dominant_share=drivers.dominant_share,
        zero_steps=[facts[j].name for j in drivers.zero_steps],
        notes=drivers.notes,
    )
