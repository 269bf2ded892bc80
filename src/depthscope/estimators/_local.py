"""Per-step (local) Jacobian statistics: RMS singular value, sigma_max, sigma_min, identity gap.

Two routes, chosen per step by `depthscope.probing`:

* explicit: build J_k (B, n_out, n_in) from basis tangents, then work on the matrix in float64:
  exact Frobenius; up to EXPLICIT_SVD_MAX_DIM wide, full SVDs of J and J - I
  (``torch.linalg.svdvals``, method "exact"); wider, sigma_max and ||J - I||_2 by Lanczos on the
  explicit matrix at a tight residual (EXPLICIT_LANCZOS_RTOL), sigma_min by Lanczos on
  (J^T J)^{-1} through one LU factorisation (inverse iteration). ``exact=True`` takes full SVDs
  at every width: the oracle.
* matrix-free: never forms J. Frobenius by Hutchinson (Rademacher probes, E||J v||^2 = ||J||_F^2),
  with more probes where their spread says the estimate is not yet within HUTCHINSON_RSE_TARGET;
  sigma_max and ||J - I||_2 by Lanczos on J^T J and (J - I)^T (J - I) through J v and J^T u, the
  steps in lockstep groups that fit a cache-sized budget; sigma_min is reported as the Weyl lower
  bound max(0, 1 - ||J - I||_2).

Every statistic is per example, then averaged (arithmetic mean) over the batch.

The modules: `_explicit` (explicit_stats), `_matrix_free` (matrix_free_stats), `_hutchinson`
(Rademacher probes and the adaptive Hutchinson estimate of ||J||_F) and `_gram` (the stacked Gram
operator that runs a group of matrix-free steps' Lanczos in lockstep, and its Ritz starts). This
module holds what both routes return.
"""

from __future__ import annotations

from dataclasses import dataclass

# How sigma_min was obtained (`LocalStats.sigma_min_kind`).
SIGMA_MIN_EXACT = "exact"
SIGMA_MIN_INVERSE_LANCZOS = "inverse-lanczos"
SIGMA_MIN_WEYL = "weyl-lower-bound"


@dataclass
class LocalStats:
    """Per-step local statistics, averaged over the batch; ``None`` where undefined (non-square).

    ``fro_se`` is the estimated standard error of ``fro`` (same units; 0 where ``fro`` is exact).
    """

    fro: float
    sigma_max: float
    sigma_min: float | None
    identity_gap: float | None
    sigma_min_kind: str | None
    method: str
    fro_se: float = 0.0
