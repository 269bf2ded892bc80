"""The physical system of claim R2: the Gupta energies against closed forms, their symmetries, and the
descriptors, sum kernels and kernel ridge against direct computations."""

import math

import numpy as np
import pytest
import torch

from depthscope.ledger.claims import _clusters as cl

R0 = cl.GUPTA_R0


def _dimer(r: float) -> torch.Tensor:
    return torch.tensor([[[0.0, 0.0, 0.0], [r, 0.0, 0.0]]], dtype=torch.float64)


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


# --- the physical system ----------------------------------------------------------------------


@pytest.mark.parametrize("r", [0.8 * R0, R0, 1.3 * R0])
def test_dimer_energies_match_the_closed_form(r):
    s = r / R0 - 1
    # each atom: repulsion A e^{-p s}, density e^{-2 q s} so sqrt(rho) = e^{-q s}
    e_hi = 2 * (cl.GUPTA_A * math.exp(-cl.GUPTA_P * s) - cl.GUPTA_XI * math.exp(-cl.GUPTA_Q * s))
    assert cl.energy_hi(_dimer(r)).item() == pytest.approx(e_hi, rel=1e-12)
    rho_ref = 3.0
    rho = math.exp(-2 * cl.GUPTA_Q * s)
    tangent = math.sqrt(rho_ref) / 2 + rho / (2 * math.sqrt(rho_ref))
    e_lo = 2 * (cl.GUPTA_A * math.exp(-cl.GUPTA_P * s) - cl.GUPTA_XI * tangent)
    assert cl.energy_lo(_dimer(r), rho_ref).item() == pytest.approx(e_lo, rel=1e-12)
    assert cl.energy_lo(_dimer(r), rho_ref, "negated").item() == pytest.approx(-e_lo, rel=1e-12)
    assert cl.energy_delta(_dimer(r), rho_ref).item() == pytest.approx(e_hi - e_lo, rel=1e-10, abs=1e-14)


def test_residual_is_nonnegative_and_zero_where_every_density_is_the_reference():
    rng = np.random.default_rng(0)
    x = torch.tensor(cl.random_clusters(20, 7, 0.1, rng))
    assert (cl.energy_delta(x, rho_ref=5.0) >= -1e-12).all()  # tangent of a concave sqrt lies above it
    rho = math.exp(-2 * cl.GUPTA_Q * 0.1)  # dimer at 1.1 r0
    assert cl.energy_delta(_dimer(1.1 * R0), rho_ref=rho).item() == pytest.approx(0.0, abs=1e-14)


def test_unknown_baseline_is_an_error():
    with pytest.raises(ValueError, match="baseline"):
        cl.energy_lo(_dimer(R0), 1.0, "random")


def test_energies_are_invariant_to_rotation_translation_and_permutation():
    rng = np.random.default_rng(1)
    x = cl.random_clusters(5, 8, 0.08, rng)
    moved = x[:, rng.permutation(8)] @ _random_rotation(rng).T + rng.normal(size=3)
    for energy in (cl.energy_hi, lambda p: cl.energy_delta(p, 4.0)):
        np.testing.assert_allclose(energy(torch.tensor(moved)).numpy(), energy(torch.tensor(x)).numpy(), rtol=1e-12)


def test_random_clusters_are_fcc_fragments_and_reproducible():
    a = cl.random_clusters(4, 12, 0.0, np.random.default_rng(3))
    b = cl.random_clusters(4, 12, 0.0, np.random.default_rng(3))
    assert a.shape == (4, 12, 3)
    np.testing.assert_array_equal(a, b)
    r, mask = cl._pair_distances(torch.tensor(a))
    nearest = torch.where(mask.bool(), r, torch.inf).amin(-1)
    assert torch.allclose(nearest, torch.full_like(nearest, R0), rtol=1e-12)


def test_mean_gradient_norm_matches_the_dimer_force():
    r = 0.95 * R0
    s = r / R0 - 1
    repulsion = -2 * cl.GUPTA_A * cl.GUPTA_P * math.exp(-cl.GUPTA_P * s)
    attraction = 2 * cl.GUPTA_XI * cl.GUPTA_Q * math.exp(-cl.GUPTA_Q * s)
    de_dr = (repulsion + attraction) / R0
    # both atoms feel |dE/dr| along the bond: ||grad||_F = sqrt(2) |dE/dr|
    assert cl.mean_gradient_norm(cl.energy_hi, _dimer(r).numpy()) == pytest.approx(math.sqrt(2) * abs(de_dr), rel=1e-10)


def test_additivity_gap_is_rounding_for_the_energies_and_large_for_a_non_extensive_quantity():
    x = cl.random_clusters(6, 10, 0.05, np.random.default_rng(4))
    assert cl.additivity_gap(cl.energy_hi, x) < 1e-13
    assert cl.additivity_gap(lambda p: cl.energy_delta(p, 5.0), x) < 1e-13

    def all_pair_distances(p):  # grows with the separation: not additive
        r, mask = cl._pair_distances(p)
        return (r * mask).sum((1, 2))

    assert cl.additivity_gap(all_pair_distances, x) > 1.0


def test_extensive_slope_recovers_power_laws():
    sizes = [4, 8, 16, 32]
    assert cl.extensive_slope(sizes, [3.0 * n for n in sizes]) == pytest.approx(1.0)
    assert cl.extensive_slope(sizes, [-0.5 * n * n for n in sizes]) == pytest.approx(2.0)


def test_mean_density_of_a_dimer():
    rho = math.exp(-2 * cl.GUPTA_Q * 0.2)
    assert cl.mean_density(_dimer(1.2 * R0)) == pytest.approx(rho)


# --- the regressor ----------------------------------------------------------------------------


def test_atom_descriptors_match_a_direct_sum_and_are_invariant():
    rng = np.random.default_rng(5)
    x = cl.random_clusters(2, 5, 0.1, rng)
    desc = cl.atom_descriptors(x)
    assert desc.shape == (2, 5, len(cl.DESCRIPTOR_CENTRES))
    m, i = 1, 3
    direct = sum(
        np.exp(-(((np.linalg.norm(x[m, i] - x[m, j]) / R0 - cl.DESCRIPTOR_CENTRES) / cl.DESCRIPTOR_WIDTH) ** 2))
        for j in range(5)
        if j != i
    )
    np.testing.assert_allclose(desc[m, i], direct, rtol=1e-12)
    perm = rng.permutation(5)
    moved = x[:, perm] @ _random_rotation(rng).T + 1.0
    np.testing.assert_allclose(cl.atom_descriptors(moved), desc[:, perm], rtol=1e-10, atol=1e-14)


def test_sum_kernels_match_a_double_loop():
    rng = np.random.default_rng(6)
    a, b = rng.random((3, 4, 2)), rng.random((5, 2, 2))
    lengths = [0.3, 1.0]
    k = cl.sum_kernels(a, b, lengths)
    assert k.shape == (2, 3, 5)
    for li, ell in enumerate(lengths):
        for p in range(3):
            for q in range(5):
                expected = sum(
                    math.exp(-np.sum((a[p, i] - b[q, j]) ** 2) / (2 * ell**2)) for i in range(4) for j in range(2)
                )
                assert k[li, p, q] == pytest.approx(expected, rel=1e-12)


def test_sum_kernels_chunking_does_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(7)
    a, b = rng.random((7, 3, 2)), rng.random((4, 3, 2))
    whole = cl.sum_kernels(a, b, [0.5])
    monkeypatch.setattr(cl, "KERNEL_CHUNK", 2)
    np.testing.assert_allclose(cl.sum_kernels(a, b, [0.5]), whole, rtol=1e-14)


def test_kernel_ridge_interpolates_with_a_tiny_ridge_and_its_norm_is_c_k_c():
    rng = np.random.default_rng(8)
    z = rng.random((6, 2))
    k = np.exp(-((z[:, None] - z[None]) ** 2).sum(-1) / 0.5)
    y = rng.normal(size=6)
    c, mean = cl.kernel_ridge(k, y, ridge=1e-12)
    np.testing.assert_allclose(k @ c + mean, y, atol=1e-6)
    assert cl.rkhs_norm(k, c) == pytest.approx(math.sqrt(c @ k @ c))
    c_big, _ = cl.kernel_ridge(k, y, ridge=1e-2)
    assert cl.rkhs_norm(k, c_big) < cl.rkhs_norm(k, c)  # more ridge, smaller norm
