"""Hutchinson probe vectors, the standard error of the estimate, and when more probes are added."""

import math

import pytest
import torch

from depthscope.estimators._hutchinson import fro_standard_error, rademacher


def test_rademacher_signs_are_fair_and_independent(gen):
    v = rademacher((64, 3, 1001), gen, torch.float32)  # a length that is not a multiple of 8
    assert v.shape == (64, 3, 1001) and v.dtype == torch.float32
    assert set(v.unique().tolist()) == {-1.0, 1.0}
    n = v.numel()
    assert abs(float(v.mean())) < 4 / n**0.5  # four standard deviations
    # Neighbours come from the same random byte: their products must average zero too, at every
    # offset within a byte.
    flat = v.flatten()
    for lag in range(1, 9):
        assert abs(float((flat[:-lag] * flat[lag:]).mean())) < 4 / n**0.5
    assert not torch.equal(rademacher((8,), gen, torch.float64), rademacher((8,), gen, torch.float64))


def test_fro_standard_error_is_the_delta_method_over_the_batch():
    samples = torch.tensor([[4.0, 1.0], [6.0, 1.0], [5.0, 1.0], [5.0, 1.0]], dtype=torch.float64)  # (P=4, B=2)
    se, mean = fro_standard_error(samples, n_in=5)
    # Example 0: m = 5, s = sqrt(2/3), rms = 1, se = rms * s / (2 m sqrt(P)); example 1 has no spread.
    se0 = (2 / 3) ** 0.5 / (2 * 5 * 2)
    assert float(mean) == pytest.approx((1 + 0.2**0.5) / 2, rel=1e-12)
    assert float(se) == pytest.approx(se0 / 2, rel=1e-12)
    assert math.isinf(float(fro_standard_error(samples[:1], 5)[0]))  # one probe: no spread to measure


def test_hutchinson_stops_at_the_default_probes_on_an_orthogonal_step(gen):
    # ||Q v||^2 = ||v||^2 = n for every sign vector: no spread, no extra probe, a standard error of 0.
    import depthscope as ds
    from depthscope.estimators import LinearizedChain, matrix_free_stats

    Q, _ = torch.linalg.qr(torch.randn(40, 40, dtype=torch.float64, generator=gen))
    lin = LinearizedChain(ds.Chain([("q", lambda x: x @ Q.T)]), torch.randn(3, 40, dtype=torch.float64, generator=gen))
    calls = []
    jvp_all = lin.jvp_all
    lin.jvp_all = lambda ks, vs: calls.append([v.shape[0] for v in vs]) or jvp_all(ks, vs)
    with torch.no_grad():
        st = matrix_free_stats(lin, [0], 16, gen, with_min=False)[0]
    assert calls == [[16]]
    assert st.fro == pytest.approx(1.0, rel=1e-12) and st.fro_se == pytest.approx(0.0, abs=1e-12)
