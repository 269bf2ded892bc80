"""The explicit route at two threads: a 150-wide square step used to hang in batched LU (upstream
torch bug, routed around by `depthscope._linalg`), wider ones got wrong pivots; the report must
equal the one-thread report. Steps up to EXPLICIT_SVD_MAX_DIM take SVDs, wider ones the LU-based
inverse iteration for sigma_min: one width of each kind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import depthscope as ds
from depthscope.estimators import EXPLICIT_SVD_MAX_DIM

# (2, 150, 150) was measured to hang batched lu_factor_ex at two threads; the second width is past
# the SVD limit, so that sigma_min goes through LU.
WIDTHS = [150, EXPLICIT_SVD_MAX_DIM + 44]
THREADS = 2


def _report(width: int) -> ds.Report:
    torch.manual_seed(0)
    chain = ds.Chain(
        [("a", nn.Linear(width, width).double()), ("tanh", nn.Tanh()), ("b", nn.Linear(width, width).double())]
    )
    x = torch.randn(2, width, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return ds.probe(chain, x, method="explicit", lyapunov=2)


@pytest.mark.parametrize("width", WIDTHS)
def test_explicit_square_step_at_two_threads_matches_one_thread(width: int) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _report(width)
        torch.set_num_threads(THREADS)
        two = _report(width)
        assert torch.get_num_threads() == THREADS  # the guard restores the caller's count
    finally:
        torch.set_num_threads(before)
    for p, q in zip(one.blocks, two.blocks):
        for field in (
            "local_rms",
            "local_sigma_max",
            "local_sigma_min",
            "identity_gap",
            "cum_log_rms",
            "grad_log_norm",
        ):
            assert getattr(q, field) == pytest.approx(getattr(p, field), rel=1e-9, abs=1e-12), field
    assert one.blocks[0].local_sigma_min is not None and one.blocks[0].local_sigma_min > 0
    assert two.lyapunov == pytest.approx(one.lyapunov, rel=1e-9, abs=1e-12)
