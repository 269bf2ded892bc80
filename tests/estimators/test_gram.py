"""Ritz starts for the matrix-free Lanczos runs: the best direction in the span of the probes."""

import torch
from tests.estimators.gram_problems import gram_problems

from depthscope.estimators._gram import combine, ritz_coefficients


def test_ritz_start_finds_the_best_direction_in_the_span(gen):
    A, _ = gram_problems(gen, M=4, N=30)
    V = torch.randn(8, 4, 30, generator=gen, dtype=torch.float64)
    AV = torch.einsum("mij,pmj->pmi", A, V)
    c = ritz_coefficients(V, AV)
    v, Av = combine(c, V), combine(c, AV)
    assert torch.allclose(Av, (A @ v[..., None])[..., 0], atol=1e-12)  # the image comes for free
    gain = Av.norm(dim=1) / v.norm(dim=1)
    # No probe direction (normalised) is stretched more than the Ritz vector.
    probes = AV.norm(dim=2) / V.norm(dim=2)
    assert torch.all(gain >= probes.max(0).values - 1e-12)
