"""Bad input and failing right-hand sides: a clear InputError or a result that says what failed and where."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthscope._errors import InputError
from depthscope.dynamics import solve_ivp

# The time at which the right-hand sides below stop being finite (or stop being torch-traceable).
T_BREAK = 0.5
# The decay rate after T_BREAK in the fallback test: stiff enough that the old Jacobian (-1) stalls Newton.
STIFF_AFTER_BREAK = 20.0


def _decay(t, y):
    return -y


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(t_span=1.0), r"t_span must be a pair \(t0, t_end\), shape \(2,\); got 1.0"),
        (dict(t_span=(0.0, 1.0, 2.0)), r"t_span must be a pair .*shape \(3,\)"),
        (dict(t_span=(0.0, 1j)), "t_span is complex"),
        (dict(t_span=("a", "b")), "t_span must be a pair"),
        (dict(y0=[1.0 + 1j, 2.0]), r"y0 is complex; expected real numbers of shape \(n,\)"),
        (dict(y0=np.array([1.0, 2.0], dtype=np.complex128)), "y0 is complex"),
        (dict(y0=torch.tensor([1.0, 2.0], dtype=torch.complex64)), "y0 is complex"),
        (dict(y0=["a", "b"]), r"y0 must be real numbers of shape \(n,\)"),
        (dict(atol=[1e-6, 1e-6, 1e-6]), r"atol has shape \(3,\); expected a scalar or shape \(2,\)"),
        (dict(atol=[[1e-6, 1e-6]]), r"atol has shape \(1, 2\); expected a scalar or shape \(2,\)"),
        (dict(atol=1e-6 + 0j), "atol is complex"),
        (dict(rtol="tight"), "rtol must be a real number"),
        (dict(rtol=[1e-3, 1e-3]), r"rtol must be a real number \(a scalar\); got shape \(2,\)"),
        (dict(max_step="big"), "max_step must be a real number"),
        (dict(first_step=[0.1]), "first_step must be a real number"),
        (dict(t_eval=[0.1j]), "t_eval is complex"),
    ],
)
def test_malformed_input_raises_input_error_naming_the_argument(kwargs, match):
    call = dict(fun=_decay, t_span=(0.0, 1.0), y0=[1.0, 2.0])
    call.update(kwargs)
    with pytest.raises(InputError, match=match):
        solve_ivp(call.pop("fun"), call.pop("t_span"), call.pop("y0"), **call)


def test_batched_atol_of_wrong_length_names_n():
    with pytest.raises(InputError, match=r"atol has shape \(2,\); expected a scalar or shape \(3,\)"):
        solve_ivp(_decay, (0.0, 1.0), np.ones((4, 3)), atol=[1e-6, 1e-6], batched=True)


def _numpy_nan_after_break(t, y):
    """Torch-traceable before T_BREAK (so autograd is chosen), numpy NaN after."""
    return -y if t < T_BREAK else np.full_like(y, np.nan)


def test_numpy_nan_mid_run_stops_with_status_naming_the_time():
    """Before: torch's raw "Cannot access data pointer" from inside jvp."""
    res = solve_ivp(_numpy_nan_after_break, (0.0, 1.0), [1.0, 2.0])
    assert res.status == -1 and not res.success
    assert "fun returned NaN or Inf at t = 0.5" in res.message and "components 0, 1" in res.message
    assert "autograd failed" in res.message and res.jac_source == "finite-difference"
    assert res.t[-1] < T_BREAK and np.isfinite(res.y).all()


def test_autograd_failing_mid_run_falls_back_to_finite_differences():
    """A numpy-only branch reached later, whose new stiffness makes Newton ask for a fresh Jacobian:
    the run finishes with finite-difference Jacobians."""
    fun = lambda t, y: -y if t < T_BREAK else -STIFF_AFTER_BREAK * np.asarray(y)  # noqa: E731
    res = solve_ivp(fun, (0.0, 1.0), [1.0], rtol=1e-6, atol=1e-12)
    assert res.success, res.message
    assert res.jac_source == "finite-difference" and "autograd failed on fun at t = 0.5" in res.message
    exact = np.exp(-T_BREAK - STIFF_AFTER_BREAK * (1.0 - T_BREAK))
    assert abs(res.y[0, -1] - exact) < 1e-3 * exact


def test_nan_mid_run_with_user_jacobian_names_fun_not_the_step_size_alone():
    res = solve_ivp(_numpy_nan_after_break, (0.0, 1.0), [1.0, 2.0], jac=lambda t, y: -np.eye(2))
    assert res.status == -1
    assert res.message.startswith("fun returned NaN or Inf at t = 0.5") and "components 0, 1" in res.message


def test_fun_leaving_its_domain_is_named():
    """y' = -sqrt(y - 0.3) reaches y = 0.3 in finite time; beyond it fun is NaN."""
    res = solve_ivp(lambda t, y: -np.sqrt(y - 0.3), (0.0, 5.0), [1.0])
    assert res.status == -1 and "fun returned NaN or Inf" in res.message
    assert res.t[-1] == pytest.approx(2.0 * np.sqrt(0.7), rel=1e-2)  # y = (sqrt(0.7) - t/2)^2 + 0.3


def test_nonfinite_jacobian_at_start_is_named():
    """Before: "step size h = 4.45e-323 fell below what floating point resolves"."""
    jac = lambda t, y: np.array([[np.nan, 0.0], [0.0, -1.0]])  # noqa: E731
    res = solve_ivp(_decay, (0.0, 1.0), [1.0, 2.0], jac=jac)
    assert res.status == -1 and "step size" not in res.message
    assert res.message.startswith("the Jacobian is not finite at t = 0 ") and "(i, j) = (0, 0)" in res.message


def test_nonfinite_jacobian_mid_run_is_named_with_time_and_entry():
    def jac(t, y):
        J = -3.0 * np.diag(y**2)
        if t > 2.0:
            J[1, 0] = np.inf
        return J

    res = solve_ivp(lambda t, y: -(y**3), (0.0, 10.0), [1.0, 2.0], jac=jac)
    assert res.status == -1 and "step size" not in res.message
    assert "the Jacobian is not finite at t = " in res.message and "(i, j) = (1, 0)" in res.message
    t_fail = float(res.message.split("t = ")[1].split(" ")[0])
    assert t_fail > 2.0


def test_batched_nonfinite_jacobian_stops_only_that_system():
    def jac(t, Y):
        J = -np.ones((len(Y), 1, 1))
        J[1, 0, 0] = np.nan
        return J

    res = solve_ivp(lambda t, Y: -Y, (0.0, 1.0), np.ones((3, 1)), jac=jac, batched=True)
    assert res.status.tolist() == [0, -1, 0]
    assert "Jacobian is not finite" in res.messages[1]
    np.testing.assert_allclose(res.y[[0, 2], 0, -1], np.exp(-1.0), rtol=1e-3)
