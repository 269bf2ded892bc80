"""`probe`: every per-step and end-to-end Jacobian quantity of a chain from a handful of passes."""

from __future__ import annotations

import math
import platform
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from depthscope._errors import InputError, NonFiniteError
from depthscope._version import __version__
from depthscope.chain._chain import Chain
from depthscope.estimators._linearized import LinearizedChain
from depthscope.estimators._local import LocalStats, explicit_stats, matrix_free_stats
from depthscope.estimators._lyapunov import benettin, random_frame
from depthscope.estimators._propagate import log_rms_from_columns, push_log_norms
from depthscope.probe._report import BlockStats, Report
from depthscope.probe._verdict import VERDICT_LOG_GAIN, verdict

# Route choice (measured on a 2-core CPU, benchmarks/probe_vs_exact.py): building a step's
# Jacobian explicitly costs n_in tangent passes and then cheap dense algebra; the matrix-free route
# costs ~2 x 30 Lanczos passes plus the probes. Up to this width the explicit route is cheaper.
EXPLICIT_MAX_DIM = 512
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
    lyapunov: int = DEFAULT_LYAPUNOV,
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
        probes: random tangents for the Hutchinson estimates of matrix-free steps, and the least
            size of the random frame that estimates cumulative norms of wide inputs.
        lyapunov: number of Lyapunov exponents (0 skips).
        seed: seeds every random choice; the same seed gives the same report.
        exact: build every Jacobian and use full SVDs and basis pushes (the tests' oracle; slow).
        method: "auto" (explicit up to EXPLICIT_MAX_DIM wide, matrix-free beyond), "explicit" or
            "matrix-free", for the local statistics.
        sigma_min: also compute sigma_min and ||J - I||_2 of square steps (two more Lanczos runs
            per step); ``False`` leaves them None.
        blocks: passed to `Chain.from_module`.

    Returns:
        a `Report`. Convention: every quantity is computed per example (the Jacobian of example b's
        output with respect to example b's input); local statistics are arithmetic means over the
        batch, log quantities (cum_log_fro, grad_log_norm, log_gain, Lyapunov exponents) are means
        of the per-example logs, and grad_ratio is exp of the mean per-example log ratio.

    Accuracy: explicit Frobenius exact; Lanczos sigma_max and identity gap within 0.01% on explicit
    steps and 0.3% on the matrix-free steps of residual MLPs (float64, tests/probe; the tests allow
    1%). On the convolutional steps of CIFAR nets, Lanczos stops at a 1% residual and can settle just
    below the top singular value: against a converged run, the mean error over the steps of resnet56,
    plain56 and preact_resnet56 was 0.04-0.13% and the largest 0.98% over two seeds
    (benchmarks/lanczos_accuracy.py);
    Hutchinson and frame estimates of Frobenius norms within 5% at 16
    probes for the chains we test (relative standard deviation at most sqrt(2/probes), far smaller
    for near-isometric Jacobians). Tape and autograd routes agree to rounding (tests/estimators).

    Raises:
        InputError: wrong input shape/dtype for the model, nothing differentiable, bad arguments.
        NonFiniteError: a NaN/Inf appears; the error names the step.
        NoBlocksError: no block sequence could be found in the module.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if probes < 1:
        raise InputError(f"probes must be >= 1, got {probes}")
    if lyapunov < 0:
        raise InputError(f"lyapunov must be >= 0, got {lyapunov}")
    if not isinstance(x, torch.Tensor):
        raise InputError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(f"x has dtype {x.dtype}; expected floating point (or integer ids for an embedding)")
    modules = [model] if isinstance(model, nn.Module) else []
    with _eval_mode(modules):
        chain = _as_chain(model, x, blocks)
        with _eval_mode(chain.modules() if not modules else []):
            return _probe_chain(chain, x, loss, probes, lyapunov, seed, exact, method, sigma_min)


def _probe_chain(chain, x, loss, probes, n_lyap, seed, exact, method, with_min) -> Report:
    gen = torch.Generator().manual_seed(seed)
    lin = LinearizedChain(chain, x)
    # Everything below applies recorded Jacobians to tangents: no graph is needed (the autograd
    # route differentiates graphs it already holds, which works in no-grad mode).
    with torch.no_grad():
        return _measure(chain, lin, loss, probes, n_lyap, gen, seed, exact, method, with_min)


def _measure(chain, lin, loss, probes, n_lyap, gen, seed, exact, method, with_min) -> Report:
    ks = lin.steps
    dtype = lin.states[lin.start].dtype

    def explicit_route(k: int) -> bool:
        if exact or method == "explicit":
            return True
        if method == "matrix-free":
            return False
        return min(lin.n_in[k], lin.n_out[k]) <= EXPLICIT_MAX_DIM

    explicit = {k: lin.explicit(k) for k in ks if explicit_route(k)}
    local: dict[int, LocalStats] = explicit_stats(explicit, exact, gen, with_min)
    local.update(matrix_free_stats(lin, [k for k in ks if k not in explicit], probes, gen, with_min))
    explicit = {k: J.to(torch.float64) for k, J in explicit.items()}

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
        pushed = benettin(apply, ks, random_frame(frame, x0.to(work), gen), lin.n_out,
                          frame_norms=not cum_exact, report=k_lyap)
    lyap: list[float] = pushed.exponents.tolist() if n_lyap > 0 else []
    if cum_exact:
        v0 = torch.eye(n0, dtype=work).unsqueeze(1).expand(n0, lin.batch, n0).reshape(n0, *x0.shape)
        cum = log_rms_from_columns(push_log_norms(apply, ks, v0)[1:], n0, probes=False).mean(-1)  # (L,)
    else:
        cum = (pushed.log_frame_norms - 0.5 * math.log(frame)).mean(-1)

    # Gradients from one backward sweep. A narrow output (a classifier head) makes J(0 -> L)
    # low-rank, the frame estimate's worst case; its Frobenius norm is then exact from n_L basis
    # cotangents swept backwards in the same sweep: ||J^T||_F = ||J||_F.
    nL = lin.states[-1][0].numel()
    narrow_out = not cum_exact and nL <= EXACT_CUMULATIVE_MAX_DIM
    g_last = _loss_gradient(lin.states[-1], loss, gen)
    cots = [g_last.unsqueeze(0).to(work)]
    if narrow_out:
        xL = lin.states[-1]
        cots.append(torch.eye(nL, dtype=work).unsqueeze(1).expand(nL, lin.batch, nL).reshape(nL, *xL.shape))
    rows = push_log_norms(apply_t, ks[::-1], torch.cat(cots))  # (L + 1, 1 + nL, B), from the output back
    glog = rows[:, 0].flip(0)  # (L + 1, B): row j is log ||dE/dx_{start + j}||
    if narrow_out:
        cum[-1] = log_rms_from_columns(rows[-1, 1:], n0, probes=False).mean(-1)
    end_to_end_exact = cum_exact or narrow_out
    grad_log = glog.mean(-1)
    grad_ratio = (glog[:-1] - glog[1:]).mean(-1).exp()

    # The end-to-end gain is the RMS over the min(n0, nL) singular values that can be nonzero, so a
    # head that projects to 10 classes is not counted as vanishing merely for its shape.
    log_gain = float(cum[-1]) + 0.5 * math.log(n0 / min(n0, nL))
    v, scale = verdict(log_gain, len(ks))

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
                local_sigma_max=st.sigma_max,
                local_sigma_min=st.sigma_min,
                identity_gap=st.identity_gap,
                cum_log_fro=float(cum[j]),
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
        explicit_max_dim=EXPLICIT_MAX_DIM,
        jacobian_routes={r: sum(1 for k in ks if lin.route(k) == r) for r in sorted(set(lin.routes.values()))},
        autograd_reasons={chain.steps[k].name: why for k, why in lin.route_reasons.items()},
    )
    versions = dict(depthscope=__version__, torch=torch.__version__, python=platform.python_version())
    return Report(blocks, lyap, log_gain, v, scale, float(glog[0].mean()),
                  settings, versions)


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
