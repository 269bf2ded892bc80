"""analyze_linear_recurrence against closed forms: Fibonacci (claim N1), a rotation, errors."""

from __future__ import annotations

import math

import pytest
import torch

from depthscope.dynamics import FIBONACCI, analyze_linear_recurrence

F64 = torch.float64
PHI = (1 + math.sqrt(5)) / 2
PSI = (1 - math.sqrt(5)) / 2
# Past 1475 steps the Fibonacci state itself overflows float64; the analysis must not.
LONG = 3000
# The unit state carries ~2e-16 absolute rounding, so tan(angle) has an absolute floor of that size
# (reached after ~35 Fibonacci steps, (|psi|/phi)^35 = 2e-15). The closed form is tested to relative
# 1e-9 while tan(angle) > 1e-6 (rounding is then < 1e-9 of it), and to that floor afterwards.
ANGLE_LIVE = 1e-6
TAN_FLOOR = 1e-15


def _fib_pairs(n: int) -> list[tuple[int, int]]:
    """Exact (F_{k+1}, F_k) for k = 0..n as Python integers (no rounding, no overflow)."""
    out, a, b = [], 1, 0
    for _ in range(n + 1):
        out.append((a, b))
        a, b = a + b, a
    return out


def test_fibonacci_eigen_structure():
    res = analyze_linear_recurrence(FIBONACCI, [1.0, 0.0], 10)
    torch.testing.assert_close(res.eigenvalues, torch.tensor([PHI, PSI], dtype=torch.complex128))
    v = torch.tensor([PHI, 1.0], dtype=F64) / math.sqrt(PHI**2 + 1)
    torch.testing.assert_close(res.dominant_eigenvector, v.to(torch.complex128))
    assert res.dominant_eigenvalue == pytest.approx(PHI, rel=1e-14)
    assert res.growth_rate == pytest.approx(math.log(PHI), rel=1e-14)
    assert res.alignment_rate == pytest.approx(math.log(abs(PSI) / PHI), rel=1e-14)


def test_fibonacci_log_norms_exact_past_the_overflow():
    # x_k = (F_{k+1}, F_k) exactly; Python integers give ln ||x_k|| with no rounding of the state.
    res = analyze_linear_recurrence(FIBONACCI, [1.0, 0.0], LONG)
    exact = torch.tensor([0.5 * math.log(a * a + b * b) for a, b in _fib_pairs(LONG)], dtype=F64)
    assert torch.isfinite(res.log_norms).all()
    torch.testing.assert_close(res.log_norms, exact, rtol=0, atol=1e-10)
    # Binet: ln ||x_n|| - n ln phi -> 0.5 ln((phi^2 + 1) / 5)
    assert res.log_norms[-1].item() - LONG * math.log(PHI) == pytest.approx(0.5 * math.log((PHI**2 + 1) / 5), abs=1e-9)


def test_fibonacci_alignment_decays_like_psi_over_phi_to_the_n():
    # A symmetric: eigenvectors orthogonal, so tan angle_n = tan angle_0 (|psi|/phi)^n exactly.
    res = analyze_linear_recurrence(FIBONACCI, [0.3, -1.0], 200)
    tan = torch.tan(res.angles)
    n = torch.arange(201, dtype=F64)
    predicted = tan[0] * torch.exp(res.alignment_rate * n)
    live = predicted > ANGLE_LIVE
    assert live.sum() > 12
    torch.testing.assert_close(tan[live], predicted[live], rtol=1e-9, atol=0)
    torch.testing.assert_close(tan, predicted, rtol=1e-9, atol=TAN_FLOOR)
    # the fitted per-step rate equals ln(|psi|/phi) = -0.9624
    slope = (torch.log(tan[live])[-1] - torch.log(tan[live])[0]) / (live.sum() - 1)
    assert slope.item() == pytest.approx(math.log(abs(PSI) / PHI), rel=1e-9)
    # and then it stays at the rounding floor: aligned, not drifting away
    assert res.angles[40:].max() < 1e-14
    assert (res.angles[1:] <= res.angles[:-1] + 1e-15).all()


def test_non_normal_alignment_rate_is_the_eigenvalue_ratio():
    # Non-orthogonal eigenvectors: tan angle_n is geometric only asymptotically; the ratio of
    # consecutive tangents tends to |lambda_2|/|lambda_1| = 0.5 with error O(0.5^n).
    A = torch.tensor([[1.0, 0.7], [0.0, -0.5]], dtype=F64)
    res = analyze_linear_recurrence(A, [0.2, 1.0], 40)
    ratio = torch.tan(res.angles[1:]) / torch.tan(res.angles[:-1])
    assert ratio[20].item() == pytest.approx(0.5, rel=1e-4)
    assert res.alignment_rate == pytest.approx(math.log(0.5))
    assert res.angles[40] < 1e-10 < res.angles[0]


def test_complex_dominant_pair_aligns_with_its_plane():
    # 0.9 x rotation on the first two coordinates, 0.5 on the third: the state never settles on a
    # line but falls into the rotation plane, tan angle_n = tan angle_0 (0.5/0.9)^n exactly.
    c, s = math.cos(0.7), math.sin(0.7)
    A = torch.tensor([[0.9 * c, -0.9 * s, 0.0], [0.9 * s, 0.9 * c, 0.0], [0.0, 0.0, 0.5]], dtype=F64)
    res = analyze_linear_recurrence(A, [1.0, 0.0, 2.0], 30)
    n = torch.arange(31, dtype=F64)
    torch.testing.assert_close(torch.tan(res.angles), 2.0 * (0.5 / 0.9) ** n, rtol=1e-9, atol=0)
    assert res.growth_rate == pytest.approx(math.log(0.9))
    assert res.alignment_rate == pytest.approx(math.log(0.5 / 0.9))
    # shrinking, |lambda| < 1: log norms decrease toward -inf linearly, never underflow to -inf
    assert res.log_norms[-1] < res.log_norms[0] and torch.isfinite(res.log_norms).all()


def test_unit_states_are_unit_and_follow_the_map():
    A = torch.tensor(FIBONACCI, dtype=F64)
    res = analyze_linear_recurrence(A, [2.0, 1.0], 5)
    torch.testing.assert_close(res.unit_states.norm(dim=1), torch.ones(6, dtype=F64))
    step = res.unit_states[:-1] @ A.T
    torch.testing.assert_close(step / step.norm(dim=1, keepdim=True), res.unit_states[1:])


@pytest.mark.parametrize(
    "A,x0,match",
    [
        ([[1.0, 0.0], [0.0, -1.0]], [1.0, 1.0], "shared"),
        ([[1.0, 1.0], [1.0, 0.0]], [1.0, 0.0, 0.0], "shape"),
        ([[1.0, 1.0], [1.0, 0.0]], [0.0, 0.0], "zero"),
        ([[0.0, 1.0], [0.0, 0.0]], [1.0, 0.0], "nilpotent"),
        ([[1.0, 2.0, 3.0]], [1.0], "square"),
    ],
)
def test_rejects_what_has_no_answer(A, x0, match):
    with pytest.raises(ValueError, match=match):
        analyze_linear_recurrence(A, x0, 3)
