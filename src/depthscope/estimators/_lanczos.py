"""Lanczos with full reorthogonalisation for the top eigenvalue of many symmetric PSD operators at once.

Used on J^T J (sigma_max^2), (J - I)^T (J - I) (the identity gap) and (J^T J)^{-1} (sigma_min^-2),
for every step and every example of a batch in lockstep: the operator acts on a stack ``(M, N)``
of M independent vectors of length N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# Stop when the residual bound of the top Ritz pair, beta_j |s_j|, falls below this fraction of the
# Ritz value: the Ritz value is then within that of an eigenvalue (usually within its square over
# the spectral gap), so sigma = sqrt(lambda) is within 0.5%, inside the 1% we promise.
LANCZOS_RTOL = 1e-2
# Enough for the top eigenvalue of the spectra we meet (edges of Marchenko-Pastur-like bulks
# converge in 20-40 iterations); each iteration costs one operator application.
LANCZOS_MAX_ITER = 60
# A Lanczos vector shorter than this fraction of the operator scale means the Krylov space is
# exhausted (an invariant subspace): the Ritz values are then exact.
BREAKDOWN_RTOL = 1e-10


@dataclass(frozen=True)
class LanczosResult:
    """Top eigenvalue per problem.

    Attributes:
        value: ``(M,)`` top Ritz value (a lower bound on the top eigenvalue that converges to it).
        residual: ``(M,)`` the residual bound beta_j |s_j| of that Ritz pair.
        iterations: operator applications spent.
        converged: ``(M,)`` whether the residual bound met the tolerance.
    """

    value: torch.Tensor
    residual: torch.Tensor
    iterations: int
    converged: torch.Tensor


def lanczos_top_eigenvalue(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    max_iter: int = LANCZOS_MAX_ITER,
    rtol: float = LANCZOS_RTOL,
) -> LanczosResult:
    """Top eigenvalue of M symmetric PSD operators, applied jointly.

    Args:
        matvec: maps ``(M, N) -> (M, N)``, row m through operator m.
        v0: ``(M, N)`` starting vectors (random; zero rows are allowed and yield 0).
        max_iter: iteration cap (also capped at N).
    """
    M, N = v0.shape
    dtype = v0.dtype
    max_iter = max(1, min(max_iter, N))
    norm0 = v0.norm(dim=1, keepdim=True)
    q = torch.where(norm0 > 0, v0 / norm0.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(v0))
    # The Krylov basis lives in one preallocated buffer: restacking a growing list every iteration
    # copied O(j M N) numbers per iteration and dominated wide problems.
    Q = torch.empty(M, max_iter, N, dtype=dtype)
    Q[:, 0] = q
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    value = torch.zeros(M, dtype=dtype)
    residual = torch.full((M,), float("inf"), dtype=dtype)
    scale = torch.zeros(M, dtype=dtype)
    it = 0
    for it in range(1, max_iter + 1):
        w = matvec(q)
        a = (q * w).sum(1)
        alphas.append(a)
        basis = Q[:, :it]  # (M, j, N), a view
        for _ in range(2):  # classical Gram-Schmidt twice: full reorthogonalisation
            coef = torch.bmm(basis, w.unsqueeze(2))  # (M, j, 1)
            w = w - torch.bmm(basis.transpose(1, 2), coef).squeeze(2)
        b = w.norm(dim=1)
        scale = torch.maximum(scale, a.abs() + b)
        T = torch.diag_embed(torch.stack(alphas, 1))
        if betas:
            off = torch.stack(betas, 1)
            T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        evals, evecs = torch.linalg.eigh(T)
        value = evals[:, -1]
        residual = b * evecs[:, -1, -1].abs()
        broken = b <= BREAKDOWN_RTOL * scale.clamp_min(torch.finfo(dtype).tiny)
        done = (residual <= rtol * value.abs().clamp_min(torch.finfo(dtype).tiny)) | broken
        if bool(done.all()) or it == max_iter:
            break
        q = torch.where(broken[:, None], torch.zeros_like(w), w / b.clamp_min(torch.finfo(dtype).tiny)[:, None])
        betas.append(torch.where(broken, torch.zeros_like(b), b))
        Q[:, it] = q
    tiny = torch.finfo(dtype).tiny
    converged = (residual <= rtol * value.abs().clamp_min(tiny)) | (residual <= BREAKDOWN_RTOL * scale.clamp_min(tiny))
    return LanczosResult(value=value.clamp_min(0.0), residual=residual, iterations=it, converged=converged)
