"""The explicit route: local statistics from Jacobians J_k built as matrices.

Norms, SVDs and LU run in float64. Up to EXPLICIT_SVD_MAX_DIM wide, full SVDs of J and J - I give
exact values; wider, sigma_max and ||J - I||_2 come from Lanczos on the explicit matrix at a tight
residual (EXPLICIT_LANCZOS_RTOL) and sigma_min from Lanczos on (J^T J)^{-1} through one LU
factorisation (inverse iteration). ``exact=True`` takes full SVDs at every width: the oracle.
"""

from __future__ import annotations

import torch

from depthscope import _linalg
from depthscope.estimators._lanczos import lanczos_top_eigenvalue
from depthscope.estimators._local import SIGMA_MIN_EXACT, SIGMA_MIN_INVERSE_LANCZOS, LocalStats

# Explicit steps up to this size (the larger of n_in, n_out) take full SVDs of J and J - I: exact,
# and no slower than the three Lanczos runs they replace (one thread, float64: 4.1 ms for one
# 256 x 256 svdvals against 2.3 ms for one Lanczos run at a 1% residual, 32 ms against 28 ms for
# eight; at 512, 27 ms against 3.9 ms, so wider steps keep Lanczos).
EXPLICIT_SVD_MAX_DIM = 256
# Lanczos on an explicit matrix stops at this relative residual on sigma^2. At a 1% residual (the
# matrix-free route stops at 1.5%), the identity gap of a GPT-2 block (width 512, top singular
# values of J - I 1.3% apart) settled 0.9% low (at 1e-3 still 0.5%: the Ritz value was converging
# to the second value); at 1e-4 every run of ten starts on twelve matrices was within 3e-8, for 27
# instead of 19 iterations (benchmarks/accuracy_real_models.py measures it on whole models). On the
# dense edge of a random matrix's spectrum it runs to the iteration cap: the statistics of eight
# 512 x 512 steps then cost 1.9x those at 1% (0.70 s against 0.35 s, one thread; 0.65 s with
# sigma_min's inverse iteration left at 1%, so it uses this residual too).
EXPLICIT_LANCZOS_RTOL = 1e-4


def explicit_stats(
    Js: dict[int, torch.Tensor], exact: bool, generator: torch.Generator, with_min: bool = True
) -> dict[int, LocalStats]:
    """Local statistics from explicit Jacobians ``Js[k]: (B, n_out, n_in)``.

    Steps of equal shape are stacked and go through each Lanczos run together. ``with_min=False``
    skips sigma_min and the identity gap (two of the three Lanczos runs).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for k, J in Js.items():
        groups.setdefault(tuple(J.shape[1:]), []).append(k)
    out: dict[int, LocalStats] = {}
    for (n_out, n_in), ks in groups.items():
        stack = torch.stack([Js[k] for k in ks])  # (G, B, n_out, n_in)
        G, B = stack.shape[:2]
        flat = stack.reshape(G * B, n_out, n_in)
        fro, smax, smin, gap, kind, method = _explicit_group(flat, n_out == n_in and with_min, exact, generator)
        for i, k in enumerate(ks):

            def pick(t: torch.Tensor | None) -> float | None:
                return None if t is None else float(t.reshape(G, B)[i].mean())

            out[k] = LocalStats(pick(fro), pick(smax), pick(smin), pick(gap), kind, method)
    return out


def _explicit_group(Jm: torch.Tensor, square: bool, exact: bool, generator: torch.Generator):
    """Per-matrix statistics of ``Jm: (M, n_out, n_in)``.

    Norms, SVDs and LU run in float64; Lanczos matrix-vector products run in the model's dtype
    (half the memory traffic in float32, far below the matrix-free Lanczos residual tolerance).
    """
    J = Jm.to(torch.float64)
    M, n_out, n_in = J.shape
    fro = J.flatten(1).norm(dim=1) / n_in**0.5
    eye = torch.eye(n_in, dtype=J.dtype) if square else None
    if exact or max(n_out, n_in) <= EXPLICIT_SVD_MAX_DIM:
        s = torch.linalg.svdvals(J)
        gap = torch.linalg.svdvals(J - eye)[:, 0] if square else None
        return fro, s[:, 0], (s[:, -1] if square else None), gap, (SIGMA_MIN_EXACT if square else None), "exact"
    v0 = torch.randn(M, n_in, generator=generator, dtype=J.dtype)
    smax = _top_singular_value(J, Jm.dtype, v0)
    if not square:
        return fro, smax, None, None, None, "explicit"
    gap = _top_singular_value(J - eye, Jm.dtype, v0)
    return fro, smax, _inverse_sigma_min(J, v0), gap, SIGMA_MIN_INVERSE_LANCZOS, "explicit"


def _top_singular_value(A: torch.Tensor, dtype: torch.dtype, v0: torch.Tensor) -> torch.Tensor:
    """sigma_max per matrix of ``A: (M, n_out, n_in)`` (float64) by Lanczos on A^T A in ``dtype``.

    Each matrix is divided by its Frobenius norm first (sigma_max <= ||A||_F), so A^T A neither
    overflows nor underflows in float32 whatever the scale of the Jacobian (a step with entries of
    1e30 squares to 1e60).
    """
    scale = A.flatten(1).norm(dim=1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    # J^T (J v) as two matrix-vector products: O(n^2) per iteration instead of forming J^T J, O(n^3).
    top = lanczos_top_eigenvalue(
        _gram_matvec((A / scale[:, None, None]).to(dtype)), v0, rtol=EXPLICIT_LANCZOS_RTOL
    ).value
    return top.sqrt() * scale


def _gram_matvec(A: torch.Tensor):
    """``v -> A^T (A v)`` per matrix of ``A: (M, n_out, n_in)``, in A's dtype, rows selectable."""

    def matvec(v: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        a = A if rows is None else A[rows]
        return (a.mT @ (a @ v.to(A.dtype)[..., None]))[..., 0].to(v.dtype)

    return matvec


def _inverse_sigma_min(J: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """sigma_min per matrix as 1/sqrt(top eigenvalue of (J^T J)^{-1}); 0 where J is singular."""
    LU, piv, info = _linalg.lu_factor_ex(J)
    singular = info != 0
    if bool(singular.all()):
        return torch.zeros(J.shape[0], dtype=J.dtype)
    # Singular matrices would poison the shared Lanczos run; give them the identity and zero them after.
    if bool(singular.any()):
        eye = torch.eye(J.shape[-1], dtype=J.dtype).expand_as(J)
        LU, piv, _ = _linalg.lu_factor_ex(torch.where(singular[:, None, None], eye, J))

    def matvec(v: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        lu, p = (LU, piv) if rows is None else (LU[rows], piv[rows])
        w = _linalg.lu_solve(lu, p, v[..., None], adjoint=True)  # J^{-T} v
        return _linalg.lu_solve(lu, p, w)[..., 0]  # J^{-1} J^{-T} v = (J^T J)^{-1} v

    lam = lanczos_top_eigenvalue(matvec, v0, rtol=EXPLICIT_LANCZOS_RTOL).value
    out = torch.where(torch.isfinite(lam) & (lam > 0), lam.clamp_min(1e-300).rsqrt(), torch.zeros_like(lam))
    return torch.where(singular, torch.zeros_like(out), out)
