"""Batched Lanczos against dense eigensolvers, in lockstep and with converged problems dropped."""

import pytest
import torch
from tests.estimators.gram_problems import gram_problems

from depthscope.estimators import LANCZOS_RTOL, lanczos_top_eigenvalue


def _matvec(H):
    return lambda v, rows: ((H if rows is None else H[rows]) @ v[..., None])[..., 0]


@pytest.mark.parametrize("drop", [False, True])
def test_top_eigenvalue_matches_eigvalsh(gen, drop):
    A, H = gram_problems(gen)
    true = torch.linalg.eigvalsh(H)[:, -1]
    v0 = torch.randn(A.shape[0], A.shape[2], generator=gen, dtype=torch.float64)
    r = lanczos_top_eigenvalue(_matvec(H), v0, drop_converged=drop)
    assert bool(r.converged.all())
    assert torch.all(r.value <= true * (1 + 1e-12))  # Ritz values are lower bounds
    assert torch.allclose(r.value, true, rtol=LANCZOS_RTOL)
    assert r.iterations.shape == (A.shape[0],) and int(r.iterations.max()) <= A.shape[2]


def test_dropping_converged_problems_applies_the_operator_to_fewer_rows(gen):
    _, H = gram_problems(gen, M=8)
    H[0] = torch.diag(torch.linspace(1, 2, H.shape[1], dtype=torch.float64))  # slow: no spectral gap
    H[1] = torch.diag(torch.tensor([5.0] + [1.0] * (H.shape[1] - 1), dtype=torch.float64))  # converges at once
    sizes = []

    def mv(v, rows):
        sizes.append(v.shape[0])
        return _matvec(H)(v, rows)

    r = lanczos_top_eigenvalue(mv, torch.randn(8, H.shape[1], generator=gen, dtype=torch.float64), drop_converged=True)
    assert sizes[0] == 8 and sizes[-1] < 8
    assert int(r.iterations[1]) < int(r.iterations[0])
    assert float(r.value[1]) == pytest.approx(5.0, rel=1e-10)


def test_exhausted_krylov_space_is_exact(gen):
    # A rank-one operator: the Krylov space is exhausted after one step, and the answer is exact.
    u = torch.randn(3, 30, generator=gen, dtype=torch.float64)
    H = u[:, :, None] * u[:, None, :]
    r = lanczos_top_eigenvalue(_matvec(H), torch.randn(3, 30, generator=gen, dtype=torch.float64))
    assert torch.allclose(r.value, (u * u).sum(1), rtol=1e-10)
    assert bool(r.converged.all())


def test_zero_start_rows_yield_zero(gen):
    _, H = gram_problems(gen, M=3)
    v0 = torch.randn(3, H.shape[1], generator=gen, dtype=torch.float64)
    v0[1] = 0
    r = lanczos_top_eigenvalue(_matvec(H), v0)
    assert float(r.value[1]) == 0.0 and float(r.value[0]) > 0


def test_a_known_first_product_saves_one_application_and_changes_nothing(gen):
    """av0 = A v0 (as the probe passes from its Hutchinson products) replaces the first matvec."""
    _, H = gram_problems(gen, M=5)
    v0 = torch.randn(5, H.shape[1], generator=gen, dtype=torch.float64) * 3.0  # not unit: av0 scales with v0
    calls = []

    def mv(v, rows):
        calls.append(v.shape[0])
        return _matvec(H)(v, rows)

    plain = lanczos_top_eigenvalue(_matvec(H), v0)
    given = lanczos_top_eigenvalue(mv, v0, av0=(H @ v0[..., None])[..., 0])
    assert torch.allclose(given.value, plain.value, rtol=1e-12)
    assert torch.equal(given.iterations, plain.iterations)
    assert len(calls) == int(plain.iterations.max()) - 1


def test_three_term_recurrence_without_reorthogonalisation(gen):
    """reorthogonalize=False (the matrix-free route) keeps two vectors and still meets the tolerance."""
    A, H = gram_problems(gen, M=6, N=400, spread=2.0)
    true = torch.linalg.eigvalsh(H)[:, -1]
    v0 = torch.randn(6, 400, generator=gen, dtype=torch.float64)
    r = lanczos_top_eigenvalue(_matvec(H), v0, drop_converged=True, reorthogonalize=False)
    assert bool(r.converged.all())
    assert torch.allclose(r.value, true, rtol=LANCZOS_RTOL)
    full = lanczos_top_eigenvalue(_matvec(H), v0, drop_converged=True)
    assert torch.allclose(r.value, full.value, rtol=LANCZOS_RTOL)


def test_an_operator_may_return_its_rayleigh_quotients(gen):
    """A Gram operator A^T A can hand back <v, A^T A v> = ||A v||^2 with A^T A v (the probe does)."""
    A, H = gram_problems(gen, M=6)
    v0 = torch.randn(6, H.shape[1], generator=gen, dtype=torch.float64)

    def mv(v, rows):
        a = A if rows is None else A[rows]
        av = (a @ v[..., None])[..., 0]
        return (a.mT @ av[..., None])[..., 0], av.square().sum(1)

    plain = lanczos_top_eigenvalue(_matvec(H), v0, drop_converged=True)
    given = lanczos_top_eigenvalue(mv, v0, drop_converged=True)
    assert torch.allclose(given.value, plain.value, rtol=1e-10)
    assert torch.equal(given.iterations, plain.iterations)


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("reorth", [False, True])
def test_non_finite_operator_stops_its_problem_only(gen, drop, reorth):
    """A problem whose operator returns NaN or Inf gets value NaN; eigh never sees it and the
    other problems converge as before (it used to raise a raw _LinAlgError from eigh)."""
    A, H = gram_problems(gen, M=6)
    true = torch.linalg.eigvalsh(H)[:, -1]
    v0 = torch.randn(A.shape[0], A.shape[2], generator=gen, dtype=torch.float64)
    bad = {1: float("nan"), 4: float("inf")}

    def mv(v, rows):
        out = _matvec(H)(v, rows)
        ids = torch.arange(H.shape[0]) if rows is None else rows
        for i, value in bad.items():
            out[ids == i] = value
        return out

    r = lanczos_top_eigenvalue(mv, v0, drop_converged=drop, reorthogonalize=reorth)
    failed = torch.zeros(H.shape[0], dtype=torch.bool)
    failed[list(bad)] = True
    assert bool(r.value[failed].isnan().all()) and not bool(r.converged[failed].any())
    assert torch.allclose(r.value[~failed], true[~failed], rtol=LANCZOS_RTOL)
    assert bool(r.converged[~failed].all())
