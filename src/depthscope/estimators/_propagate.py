"""Pushing tangents forward and cotangents backward along a chain, in log domain.

A product of L Jacobians over- or underflows long before L = 10,000 (0.5^10000 = 1e-3011). Every
routine here renormalises its vectors after each step and accumulates the logarithms of the norms
it divided out, so what is returned is always finite unless a Jacobian maps a vector to exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from depthscope.estimators._adaptive import more_samples
from depthscope.estimators._layout import as_native, flatten_native

ApplyFn = Callable[[int, torch.Tensor], torch.Tensor]  # (k, V: (P, B, *S_k)) -> (P, B, *S_{k+1})

# The random-frame estimate of cumulative log RMS gains gets more columns until its standard error
# (natural log, about the relative error of the gain) is at most this on every estimated step: 2.5%
# keeps a 3-sigma error far inside the factor of 10 that separates a verdict from "stable". At 2%,
# resnet56's 16-column frame (standard error 0.021 on its worst step) grew to 23 columns for 5% more
# probe time (benchmarks/probe_zoo.py) and a change in the gain's third digit.
FRAME_LOG_SE_TARGET = 0.025
# ... but never more than this many columns in all: each costs one tangent pass per step. A product
# of many Jacobians can be nearly rank one, where the standard error is about 0.7 / sqrt(K) (the
# squares are then chi-square with one degree of freedom) and 2% would take ~1250 columns; the cap
# bounds the frame at 8x the default 16, and a chain that stops at it reports its larger standard
# error (`cum_log_rms_se`).
FRAME_MAX_COLUMNS = 128
# Extra columns are pushed at most this many at a time (memory of one pass).
FRAME_CHUNK = 32
# Rounds of "measure the spread, add the columns it asks for": the second corrects a spread
# measured on 16 columns.
FRAME_MAX_ROUNDS = 3


def _normalise(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``v: (P, B, ...)`` into unit vectors and the log of their norms ``(P, B)``."""
    norms = tangent_norms(v)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    unit = v * (1.0 / safe).to(v.dtype).reshape(*norms.shape, *([1] * (v.ndim - 2)))
    return unit, torch.log(norms)  # log 0 = -inf marks a vector annihilated exactly


def random_frame(k: int, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random orthonormal frame ``(k, B, *S)`` for each example of ``like: (B, *S)``."""
    B = like.shape[0]
    n = like[0].numel()
    g = torch.randn(B, n, k, generator=generator, dtype=like.dtype)
    q, _ = torch.linalg.qr(g)
    return as_native(q.permute(2, 0, 1).contiguous(), tuple(like.shape[1:]))


def tangent_norms(t: torch.Tensor, exact_range: bool = True) -> torch.Tensor:
    """Norms ``(P, B)`` of tangents ``t: (P, B, ...)`` in any memory layout, as float64
    (``exact_range=False``: in t's precision, for tangents known to be far from its limits).

    In float32 the squares of entries beyond 1e19 overflow and those below 1e-19 underflow. The
    norms are summed in the tangents' precision (a float64 reduction of float32 tangents is 9x
    slower, benchmarks/probe_parts.py) and summed again in float64 only when some norm lies
    outside the range where that is exact to rounding.
    """
    if t.ndim == 2:
        return t.abs().double() if exact_range else t.abs()
    dims = tuple(range(2, t.ndim))
    norms = torch.linalg.vector_norm(t, dim=dims)
    if not exact_range:
        return norms
    if t.dtype != torch.float64:
        info = torch.finfo(t.dtype)
        n = t[0, 0].numel()
        lowest = (n * info.tiny / info.eps) ** 0.5  # below: flushed squares could matter
        highest = (info.max / 2) ** 0.5  # above: the sum of squares may have overflowed
        if not bool(((norms > lowest) & (norms < highest)).all()):
            norms = torch.linalg.vector_norm(t, dim=dims, dtype=torch.float64)
    return norms.double()


def push_log_norms(apply: ApplyFn, ks: Sequence[int], v0: torch.Tensor) -> torch.Tensor:
    """Log norms of ``J(0 -> k) v_p`` for every k, each column renormalised after each step.

    Args:
        apply: ``apply(k, V)`` = J_k V.
        ks: the step indices, in order.
        v0: ``(P, B, *S_0)`` starting tangents.

    Returns:
        ``(len(ks) + 1, P, B)``: row 0 the log norms of v0, row j+1 after step ks[j] (natural log).
    """
    v, acc = _normalise(v0)
    rows = [acc.clone()]
    for k in ks:
        v, log_r = _normalise(apply(k, v))
        acc = acc + log_r
        rows.append(acc.clone())
    return torch.stack(rows)


def log_rms_from_columns(log_norms: torch.Tensor, n_in: int, probes: bool) -> torch.Tensor:
    """Per-example log RMS singular value from pushed columns.

    ``log_norms: (..., P, B)``. With basis columns (``probes=False``) sum_p ||J e_p||^2 = ||J||_F^2
    exactly; with Rademacher probes (``probes=True``) E||J v||^2 = ||J||_F^2 (Hutchinson), so the
    mean over probes estimates it. The RMS singular value is ||J||_F / sqrt(n_in). Returns ``(..., B)``.
    """
    sq = torch.logsumexp(2.0 * log_norms, dim=-2)
    if probes:
        sq = sq - math.log(log_norms.shape[-2])
    return 0.5 * (sq - math.log(n_in))


def sweep_log_grad_norms(apply_t: ApplyFn, ks: Sequence[int], g_last: torch.Tensor) -> torch.Tensor:
    """Log norms of dE/dx_k for every state, from dE/dx_L backwards.

    Args:
        apply_t: ``apply_t(k, U)`` = J_k^T U.
        ks: step indices in forward order; swept in reverse.
        g_last: ``(B, *S_L)`` the loss gradient at the chain's output.

    Returns:
        ``(len(ks) + 1, B)``: row j is log ||dE/dx_{ks[0] + j}|| per example.
    """
    g, acc = _normalise(g_last.unsqueeze(0))
    rows = [acc[0].clone()]
    for k in reversed(ks):
        g, log_r = _normalise(apply_t(k, g))
        acc = acc + log_r
        rows.append(acc[0].clone())
    return torch.stack(rows[::-1])


def benettin_step(z: torch.Tensor, keep: int, with_r: bool = False):
    """One Benettin re-orthonormalisation.

    Args:
        z: ``(m, B, *S_{k+1})`` the pushed frame J_k Q.
        keep: how many directions survive (at most the new dimension).
        with_r: also return the triangular factor of all m columns, ``(B, keep, m)``, so that
            z = Q R exactly even where the frame shrinks (used for Frobenius norms of products).

    Returns:
        the new orthonormal frame ``(keep, B, *S_{k+1})``, ``log|R_ii|`` of shape ``(keep, B)``
        and, with ``with_r``, R.
    """
    m, B = z.shape[:2]
    if keep == 1 and not with_r:  # a single direction: QR is a normalisation
        unit, log_r = _normalise(z[:1])
        return unit, log_r
    shape = tuple(z.shape[2:])
    mat = flatten_native(z, len(shape)).permute(1, 2, 0)  # (B, n, m): columns are the directions
    Qm, R = torch.linalg.qr(mat if with_r else mat[..., :keep])
    Qm, R = Qm[..., :keep], R[:, :keep]
    diag = torch.diagonal(R, dim1=-2, dim2=-1)  # (B, keep)
    # Q and R are used as LAPACK returns them: a sign flip of a direction changes no norm, no
    # exponent (log |R_ii|) and no product of the triangular factors, and would cost a pass over Q.
    new = as_native(Qm.permute(2, 0, 1).contiguous(), shape)  # (keep, B, *S); a view when B = 1
    if with_r:
        return new, torch.log(diag.abs()).T, R
    return new, torch.log(diag.abs()).T


def frame_log_rms(log_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-mean log RMS singular value of J(0 -> k) from random unit columns, and its standard error.

    Args:
        log_cols: ``(L, K, B)`` log ||J(0 -> k) q_i|| for K unit columns q_i, each uniform on the
            sphere (the columns of Haar frames, independent frames pooled); E ||J q||^2 = ||J||_F^2 / n_0,
            so the mean of the K squares estimates the squared RMS singular value.

    Returns:
        ``(L,)`` the mean over the batch of the per-example log RMS estimate, and ``(L,)`` its
        standard error (natural log): per example half the relative standard error of the mean of
        the squares (delta method), the columns' spread taken as that of independent draws (the
        columns of one orthonormal frame are negatively correlated, so this errs on the large
        side), then sqrt(sum_b se_b^2) / B over B independent examples. +inf for one column.
    """
    L, K, B = log_cols.shape
    per = 0.5 * (torch.logsumexp(2.0 * log_cols, dim=1) - math.log(K))  # (L, B)
    if K < 2:
        return per.mean(-1), torch.full((L,), float("inf"), dtype=per.dtype)
    finite = torch.isfinite(per)
    # Squares relative to their mean (mean 1 per example); a step that annihilates every column
    # has no spread to measure and an exact log of -inf.
    rel = torch.exp(2.0 * (log_cols - torch.where(finite, per, torch.zeros_like(per)).unsqueeze(1)))
    se_b = torch.where(finite, 0.5 * rel.std(dim=1) / K**0.5, torch.zeros_like(per))
    return per.mean(-1), se_b.square().sum(-1).sqrt() / B


def grow_frame(
    apply: ApplyFn,
    ks: Sequence[int],
    x0: torch.Tensor,
    log_cols: torch.Tensor,
    generator: torch.Generator,
    skip_last: bool = False,
) -> torch.Tensor:
    """Add random unit columns to ``log_cols: (L, K, B)`` until `frame_log_rms`'s standard error is
    at most FRAME_LOG_SE_TARGET on every row (the last excepted with ``skip_last``, when the caller
    has that row exactly) or there are FRAME_MAX_COLUMNS columns; returns ``(L, K', B)``.

    The new columns are the columns of independent Haar frames drawn like ``x0: (B, *S_0)`` and
    pushed without QR (their norms are all that is needed). Each round asks for the count that the
    current spread says is enough, a quarter more since the spread is itself estimated.
    """
    n0 = x0[0].numel()
    for _ in range(FRAME_MAX_ROUNDS):
        K = log_cols.shape[1]
        _, se = frame_log_rms(log_cols)
        worst = float(se[:-1].max()) if skip_last and len(se) > 1 else (0.0 if skip_last else float(se.max()))
        if worst <= FRAME_LOG_SE_TARGET or K >= FRAME_MAX_COLUMNS:
            break
        extra = more_samples(K, worst, FRAME_LOG_SE_TARGET, FRAME_MAX_COLUMNS)
        while extra > 0:
            m = min(FRAME_CHUNK, extra, n0)
            rows = push_log_norms(apply, ks, random_frame(m, x0, generator))[1:]  # (L, m, B)
            log_cols = torch.cat([log_cols, rows.to(log_cols.dtype)], dim=1)
            extra -= m
    return log_cols
