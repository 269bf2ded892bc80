"""Lanczos with full reorthogonalisation for the top eigenvalue of many symmetric PSD operators at once.

Used on J^T J (sigma_max^2), (J - I)^T (J - I) (the identity gap) and (J^T J)^{-1} (sigma_min^-2),
for every step and every example of a batch in lockstep: the operator acts on a stack ``(M, N)``
of M independent vectors of length N.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# A problem stops when its top Ritz pair (theta, residual bound r = beta_j |s_j|) has
# r <= LANCZOS_RTOL * theta: theta is then within r of an eigenvalue, usually the top one (a start
# that barely touches the top eigenvector can stop below it: benchmarks/lanczos_accuracy.py), and
# sqrt(theta) within 0.75% of a singular value. Against a 1% residual this takes 12-15% fewer
# iterations (torchvision's resnet18 at 112 px: 500 against 589 over three seeds) for sigma_max
# errors, against a converged reference, of 0.07-0.19% against 0.02-0.07% at the median and at most
# 1.6% against 1.0% (seven CIFAR, torchvision, timm and Hugging Face models:
# benchmarks/lanczos_accuracy.py).
# A Kato-Temple test, r^2 / (theta - theta_2), stopped earlier but was measured to double the
# largest error on CIFAR conv steps for 3% fewer iterations, so it is not used.
LANCZOS_RTOL = 1.5e-2
# Enough for the top eigenvalue of the spectra we meet (edges of Marchenko-Pastur-like bulks
# converge in 20-40 iterations); each iteration costs one operator application.
LANCZOS_MAX_ITER = 60
# A Lanczos vector shorter than this fraction of the operator scale means the Krylov space is
# exhausted (an invariant subspace): the Ritz values are then exact.
BREAKDOWN_RTOL = 1e-10
# Gram-Schmidt is repeated only when the first pass removed more than this share of the vector's
# norm (the "twice is enough" test): orthogonality then stays at rounding level.
REORTH_KEEP = 0.7


@dataclass(frozen=True)
class LanczosResult:
    """Top eigenvalue per problem.

    Attributes:
        value: ``(M,)`` top Ritz value (a lower bound on the top eigenvalue that converges to it);
            NaN for a problem whose operator returned NaN or Inf (overflow, or an operator with
            non-finite entries), which then stops.
        residual: ``(M,)`` the residual bound beta_j |s_j| of that Ritz pair.
        iterations: ``(M,)`` operator applications spent on each problem.
        converged: ``(M,)`` whether a stopping test was met.
    """

    value: torch.Tensor
    residual: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor


def lanczos_top_eigenvalue(
    matvec: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    v0: torch.Tensor,
    max_iter: int = LANCZOS_MAX_ITER,
    rtol: float = LANCZOS_RTOL,
    drop_converged: bool = False,
    reorthogonalize: bool = True,
    av0: torch.Tensor | None = None,
) -> LanczosResult:
    """Top eigenvalue of M symmetric PSD operators, applied jointly.

    A problem whose operator returns NaN or Inf stops with value NaN and ``converged`` False; the
    others go on unaffected.

    With ``drop_converged``, problems that have converged drop out and the operator is applied to
    the still-active ones only; otherwise all run until every one has converged (the stopping tests
    can be met at an eigenvalue below the top when the start vector barely touches the top
    eigenvector, and the extra iterations of lockstep guard against that: use ``drop_converged``
    with start vectors that are already rich in the top direction).

    Args:
        matvec: ``matvec(v, rows)`` maps ``(m, N) -> (m, N)``: row i through operator ``rows[i]``
            (``rows`` is a long tensor of problem indices, or None for all M in order). It may
            return ``(A v, <v, A v>)`` instead, the Rayleigh quotients ``(m,)`` included: for a
            Gram operator G^T G they are ||G v||^2, cheaper than an inner product over N.
        v0: ``(M, N)`` starting vectors (random; zero rows are allowed and yield 0). Their dtype is
            the working precision of the Krylov basis.
        max_iter: iteration cap (also capped at N).
        reorthogonalize: keep the Krylov basis and orthogonalise against all of it (full
            reorthogonalisation). ``False`` runs the plain three-term recurrence, keeping two
            vectors per problem: orthogonality is then lost only as a Ritz pair converges to
            rounding level (Paige), far below the stopping tests, which stop at a relative residual
            of ``rtol``; an exhausted Krylov space is then not detected, so use it for N much larger
            than ``max_iter``.
        av0: ``(M, N)`` the operator applied to ``v0``, when the caller already has it; the first
            iteration then applies no operator.
    """
    M, N = v0.shape
    dtype = v0.dtype
    tiny = torch.finfo(dtype).tiny
    max_iter = max(1, min(max_iter, N))
    norm0 = v0.norm(dim=1, keepdim=True)
    inv0 = torch.where(norm0 > 0, 1.0 / norm0.clamp_min(tiny), torch.zeros_like(norm0))  # zero rows stay zero
    q = v0 * inv0

    value = torch.zeros(M, dtype=dtype)
    residual = torch.full((M,), float("inf"), dtype=dtype)
    iterations = torch.zeros(M, dtype=torch.long)
    converged = torch.zeros(M, dtype=torch.bool)

    rows = torch.arange(M)  # problems still running
    # The Krylov basis lives in one preallocated buffer, compacted when problems finish; without
    # reorthogonalisation only the previous vector is kept.
    Q = torch.empty(M, max_iter if reorthogonalize else 0, N, dtype=dtype)
    if reorthogonalize:
        Q[:, 0] = q
    q_prev = torch.zeros_like(q)
    alphas = torch.zeros(M, max_iter, dtype=torch.float64)
    betas = torch.zeros(M, max_iter, dtype=torch.float64)
    scale = torch.zeros(M, dtype=torch.float64)
    failed = torch.zeros(M, dtype=torch.bool)  # an operator output was NaN/Inf
    for it in range(1, max_iter + 1):
        a = None
        if it == 1 and av0 is not None:
            w = av0.to(dtype) * inv0
        else:
            w = matvec(q, None if len(rows) == M else rows)
            if isinstance(w, tuple):
                w, a = w
            w = w.to(dtype)
        if a is None:
            a = torch.linalg.vecdot(q, w)  # <q_j, A q_j> per problem (bmm: 3.7x slower, benchmarks/probe_parts.py)
        a = a.to(dtype)
        alphas[:, it - 1] = a.double()
        if reorthogonalize:
            basis = Q[:, :it]  # (m, j, N), a view
            before = w.norm(dim=1)
            w = w - torch.bmm(basis.transpose(1, 2), torch.bmm(basis, w.unsqueeze(2))).squeeze(2)
            after = w.norm(dim=1)
            if bool((after < REORTH_KEEP * before).any()):
                w = w - torch.bmm(basis.transpose(1, 2), torch.bmm(basis, w.unsqueeze(2))).squeeze(2)
        else:  # three-term recurrence: w - alpha_j q_j - beta_{j-1} q_{j-1}, in place
            if w.untyped_storage().data_ptr() == q.untyped_storage().data_ptr():
                w = w.clone()  # an operator that returned (a view of) its argument
            w.addcmul_(a[:, None], q, value=-1.0)
            if it > 1:
                w.addcmul_(betas[:, it - 2].to(dtype)[:, None], q_prev, value=-1.0)
        b = torch.linalg.vector_norm(w, dim=1).double()
        # A non-finite coefficient would make eigh fail for the whole stack: the problem stops, its
        # coefficients are zeroed and its vector continues as zero (as at a breakdown).
        bad = ~(torch.isfinite(alphas[:, it - 1]) & torch.isfinite(b))
        if bool(bad.any()):
            failed[rows[bad]] = True
            alphas[bad] = 0.0
            betas[bad] = 0.0
            a = torch.where(bad, torch.zeros_like(a), a)
            b = torch.where(bad, torch.zeros_like(b), b)
            w = torch.where(bad[:, None], torch.zeros_like(w), w)
        scale = torch.maximum(scale, a.double().abs() + b)
        T = (
            torch.diag_embed(alphas[:, :it])
            + torch.diag_embed(betas[:, : it - 1], 1)
            + torch.diag_embed(betas[:, : it - 1], -1)
        )
        evals, evecs = torch.linalg.eigh(T)
        theta = evals[:, -1]
        r = b * evecs[:, -1, -1].abs()
        broken = b <= BREAKDOWN_RTOL * scale.clamp_min(tiny)
        done = (r <= rtol * theta.abs().clamp_min(tiny)) | broken | failed[rows]
        value[rows] = theta.to(dtype)
        residual[rows] = r.to(dtype)
        iterations[rows] = it
        converged[rows] = done
        if bool(done.all()) or it == max_iter:
            break
        keep = (~done).nonzero().squeeze(1)
        if drop_converged and len(keep) < len(rows):  # compact: finished problems leave every buffer
            if reorthogonalize:
                used, Q = Q[:, :it][keep], torch.empty(len(keep), max_iter, N, dtype=dtype)
                Q[:, :it] = used  # copy only the columns in use, not the whole preallocated buffer
            q, q_prev = q[keep], q_prev[keep]
            rows, alphas, betas, scale = rows[keep], alphas[keep], betas[keep], scale[keep]
            w, b, broken = w[keep], b[keep], broken[keep]
        # An exhausted Krylov space (breakdown) continues with a zero vector: its Ritz values are final.
        b = torch.where(broken, torch.zeros_like(b), b)
        inv = torch.where(broken, torch.zeros_like(b), 1.0 / b.clamp_min(tiny))
        q_next = w.mul_(inv.to(dtype)[:, None]) if not reorthogonalize else w * inv.to(dtype)[:, None]
        betas[:, it - 1] = b
        if reorthogonalize:
            Q[:, it] = q_next
        q_prev, q = q, q_next
    value = torch.where(failed, torch.full_like(value, float("nan")), value.clamp_min(0.0))
    residual = torch.where(failed, torch.full_like(residual, float("inf")), residual)
    return LanczosResult(value=value, residual=residual, iterations=iterations, converged=converged & ~failed)
