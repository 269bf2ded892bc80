"""Lyapunov exponents of a chain by Benettin's method (QR after every step).

The exponents are per step: lambda_i = (1/L) sum_k log |R_ii^(k)|, the average log growth of the
i-th direction of a frame pushed through J_1, ..., J_L and re-orthonormalised at every step.
Negative: the i-th direction vanishes; positive: it explodes; zero: marginal (claim V10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from depthscope._errors import InputError, NonFiniteError, check_count, check_seed
from depthscope.chain import Chain, check_batch, run_step
from depthscope.estimators._propagate import ApplyFn, benettin_step, random_frame


@dataclass(frozen=True)
class LyapunovResult:
    """Lyapunov exponents.

    Attributes:
        exponents: ``(k,)`` per step, natural log, descending, averaged over the batch.
        per_example: ``(B, k)`` before averaging.
        steps: number of steps averaged over.
        log_frame_norms: ``(L, B)`` log ||J(0 -> k) Q_0||_F after each step (`benettin` with
            ``frame_norms=True``; else None). For a Haar-random frame of k orthonormal columns,
            (n_0 / k) ||J Q_0||_F^2 is an unbiased estimate of ||J||_F^2.
        log_column_norms: ``(L, k, B)`` log ||J(0 -> k) q_i|| of each column of Q_0 (with
            ``frame_norms=True``; else None); their squares sum to the frame norm's square, and
            their spread gives the estimate's standard error.
    """

    exponents: torch.Tensor
    per_example: torch.Tensor
    steps: int
    log_frame_norms: torch.Tensor | None = None
    log_column_norms: torch.Tensor | None = None


def benettin(
    apply: ApplyFn,
    ks: Sequence[int],
    q0: torch.Tensor,
    n_out: dict[int, int],
    frame_norms: bool = False,
    report: int | None = None,
) -> LyapunovResult:
    """Benettin's algorithm over the steps ``ks`` with ``apply(k, Q) = J_k Q``.

    The frame shrinks to the smallest dimension met along the way (directions beyond it vanish).
    With ``frame_norms``, the product of the triangular factors, M_k = R_k ... R_1 (so that
    J(0 -> k) Q_0 = Q_k M_k), is carried too, renormalised in log domain: its Frobenius norm is
    that of the pushed frame, at the cost of k x k products. ``report`` keeps the exponents of the
    first ``report`` directions only (they are those a frame of that size would give: QR is nested).
    """
    q = q0
    m0, B = q0.shape[:2]
    # Sums of logs over many steps and the small triangular product run in float64 whatever the
    # frame's precision.
    total = torch.zeros(m0, B, dtype=torch.float64)
    M = torch.eye(m0, dtype=torch.float64).expand(B, m0, m0)
    acc = torch.zeros(B, dtype=torch.float64)
    norms, columns = [], []
    for k in ks:
        keep = min(q.shape[0], n_out[k])
        if frame_norms:
            q, logs, R = benettin_step(apply(k, q), keep, with_r=True)
            M = R.double() @ M
            s = M.flatten(1).norm(dim=1)
            M = M / torch.where(s > 0, s, torch.ones_like(s))[:, None, None]
            acc = acc + torch.log(s)
            norms.append(acc.clone())
            columns.append((torch.log(M.norm(dim=1)) + acc[:, None]).T)  # (m0, B): J(0 -> k) q_i = Q_k M e_i
        else:
            q, logs = benettin_step(apply(k, q), keep)
        total = total[:keep] + logs
    per_example = (total[:report] / max(1, len(ks))).T  # (B, keep)
    per_example = per_example.sort(dim=1, descending=True).values
    frame = torch.stack(norms) if frame_norms and norms else None
    cols = torch.stack(columns) if frame_norms and columns else None
    return LyapunovResult(per_example.mean(0), per_example, len(ks), frame, cols)


def _stream_apply(step, k: int, x: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f_k(x), J_k Q) by forward-mode dual numbers, one pass per direction; ``q: (m, B, *S_k)``.

    For small maps iterated many times this costs a few tens of microseconds a step, about 50x
    less than building a reverse-mode graph per step.
    """
    if step.jvp is not None:
        with torch.no_grad():
            return step.jvp(x, q)
    outs = []
    y = None
    with torch.no_grad(), fwAD.dual_level():
        for i in range(q.shape[0]):
            primal, tangent = fwAD.unpack_dual(run_step(step, k, fwAD.make_dual(x, q[i])))
            if tangent is None:
                raise InputError(f"step {k} ({step.name!r}) output does not depend differentiably on its input")
            y = primal
            outs.append(tangent)
    return y, torch.stack(outs)


def lyapunov(
    chain: Chain | Sequence | nn.Module, x: torch.Tensor, k: int = 1, seed: int = 0, transient: int = 0
) -> LyapunovResult:
    """Top-``k`` Lyapunov exponents (per step) of ``chain`` started at ``x: (B, *S_0)``.

    Streams over the steps (nothing is kept from earlier steps), so chains of 10^5 steps of a small
    map run in seconds and fit in memory. The first ``transient`` steps align the random starting
    frame and are not averaged (their effect on the mean decays like 1/L, not faster). `probe`
    runs the same Benettin update on its own linearisation of the chain.

    ``chain`` may also be a list of steps (as `Chain` takes them) or an ``nn.Module`` (its blocks
    found by `Chain.from_module` on ``x``), as in `depthscope.probe`.

    Raises:
        NonFiniteError: the state became NaN/Inf at some step (named).
        InputError: ``x`` is not a batch ``(B, *S)``, ``k``, ``transient`` or ``seed`` is not a
            fitting integer, or ``chain`` is none of the kinds above.
    """
    check_batch(x)
    k = check_count("k", k, 1)
    transient = check_count("transient", transient, 0)
    seed = check_seed(seed)
    if isinstance(chain, (list, tuple)):
        chain = Chain(chain)
    elif isinstance(chain, nn.Module):
        chain = Chain.from_module(chain, example=x)
    elif not isinstance(chain, Chain):
        raise InputError(f"lyapunov takes a Chain, a list of steps or an nn.Module, not a {type(chain).__name__}")
    gen = torch.Generator().manual_seed(seed)
    state = x.detach()
    q = None
    total = torch.zeros(0)
    count = 0
    for idx, step in enumerate(chain.steps):
        if not state.is_floating_point():
            with torch.no_grad():
                state = run_step(step, idx, state)
            continue
        if q is None:
            q = random_frame(min(k, state[0].numel()), state, gen)
            total = torch.zeros(q.shape[0], state.shape[0], dtype=state.dtype)
        y, z = _stream_apply(step, idx, state, q)
        if not torch.isfinite(y).all() or not torch.isfinite(z).all():
            raise NonFiniteError(f"NaN/Inf first appears at step {idx} ({step.name!r})", step=idx, step_name=step.name)
        q, logs = benettin_step(z, min(q.shape[0], y[0].numel()))
        total = total[: q.shape[0]]
        if idx >= transient:
            total = total + logs
            count += 1
        state = y
    if q is None:
        raise InputError("the chain has no floating-point state: nothing to differentiate")
    if count == 0:
        raise ValueError(f"transient={transient} leaves no step to average over ({len(chain)} steps)")
    per_example = (total / count).T.sort(dim=1, descending=True).values
    return LyapunovResult(per_example.mean(0), per_example, count)
