"""Estimators of Jacobian quantities along a chain: matrix-free and exact.

The face of the package: other packages import these names from here, never from the private
modules. Inside, the modules form layers (lowest first):

* `_layout` (the memory order of tangents), `_adaptive` (how many more random samples an
  estimate needs), `_lanczos` (top eigenvalues of many symmetric operators at once);
* `_tape` (a step's Jacobian recorded as linear operations and replayed on tangents);
* `_linearized` (`LinearizedChain`: J_k v and J_k^T u for every step, by tape or by autograd);
* `_propagate` (tangents pushed along the chain in log domain, random frames), `_lyapunov`
  (Benettin's method);
* per-step statistics (`LocalStats`, in `_local`): `_explicit` builds J_k, `_matrix_free` does
  not, with `_hutchinson` for ||J_k||_F and `_gram` for the Lanczos operators.
"""

from depthscope.estimators._explicit import EXPLICIT_SVD_MAX_DIM, explicit_stats
from depthscope.estimators._hutchinson import HUTCHINSON_RSE_TARGET, rademacher
from depthscope.estimators._lanczos import LANCZOS_RTOL, LanczosResult, lanczos_top_eigenvalue
from depthscope.estimators._layout import as_native, flatten_native
from depthscope.estimators._linearized import ROUTE_AUTOGRAD, ROUTE_TAPE, LinearizedChain
from depthscope.estimators._local import SIGMA_MIN_EXACT, SIGMA_MIN_INVERSE_LANCZOS, SIGMA_MIN_WEYL, LocalStats
from depthscope.estimators._lyapunov import LyapunovResult, benettin, lyapunov
from depthscope.estimators._matrix_free import matrix_free_stats
from depthscope.estimators._propagate import (
    FRAME_LOG_SE_TARGET,
    frame_log_rms,
    grow_frame,
    log_rms_from_columns,
    push_log_norms,
    random_frame,
    sweep_log_grad_norms,
    tangent_norms,
)

__all__ = [
    "EXPLICIT_SVD_MAX_DIM",
    "FRAME_LOG_SE_TARGET",
    "HUTCHINSON_RSE_TARGET",
    "LANCZOS_RTOL",
    "ROUTE_AUTOGRAD",
    "ROUTE_TAPE",
    "SIGMA_MIN_EXACT",
    "SIGMA_MIN_INVERSE_LANCZOS",
    "SIGMA_MIN_WEYL",
    "LanczosResult",
    "LinearizedChain",
    "LocalStats",
    "LyapunovResult",
    "as_native",
    "benettin",
    "explicit_stats",
    "flatten_native",
    "frame_log_rms",
    "grow_frame",
    "lanczos_top_eigenvalue",
    "log_rms_from_columns",
    "lyapunov",
    "matrix_free_stats",
    "push_log_norms",
    "rademacher",
    "random_frame",
    "sweep_log_grad_norms",
    "tangent_norms",
]
