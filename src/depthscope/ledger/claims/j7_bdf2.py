"""Claim J7 (seed 001): BDF-2's Newton matrix is I - h beta0 J_f, and the implicit method stays stable with large stiff steps."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.integrate
import scipy.linalg

from depthscope.dynamics import BETA0, GAMMA, ROBER, newton_matrix, solve_ivp, tolerances_for_local
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted

J7_ORDER = 2  # BDF-2
J7_EXACT_TOL = 1e-12  # Newton matrix vs I - h beta0 J, relative to max |entry| (same float64 formula)
J7_FD_TOL = 1e-9  # Newton matrix vs central differences of the BDF-2 residual, relative to max |entry|
# Central-difference step relative to max(|y_j|, 1). ROBER's right-hand side is quadratic, so
# central differences have no truncation error at any step and a large step only cuts the roundoff.
J7_FD_STEP = 1e-3
J7_STABLE = 1.0 + 1e-12  # spectral radius of a step map that still counts as stable
J7_STEP_RATIO_MIN = 10.0  # BDF-2's largest step / RK45's largest step that counts as "explicit needs tiny steps"
J7_ACCURACY = 1e-2  # max relative deviation of BDF-2 from the reference at the end of the interval
J7_ATOL = 1e-8  # absolute tolerance of both solvers on the linear system
J7_H_GRID = 25  # steps h on the spectral-radius grid (log-spaced)


def _bdf2_residual(
    fun: Callable, t: float, y_pred: np.ndarray, psi: np.ndarray, c: float
) -> Callable[[np.ndarray], np.ndarray]:
    """R(d) = d - c f(t, y_pred + d) + psi, the BDF equation in the solver's form (c = h beta0): (n,) -> (n,)."""
    return lambda d: d - c * fun(t, y_pred + d) + psi


def _central_jacobian(R: Callable[[np.ndarray], np.ndarray], d: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian of R at d with per-component steps (n,): (n, n)."""
    n = len(d)
    J = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = steps[j]
        J[:, j] = (R(d + e) - R(d - e)) / (2 * steps[j])
    return J


def _newton_matrix_check(problem, t_end: float, rtol: float, n_check: int) -> dict:
    """Along a BDF-2 solve of a stiff test problem, at ``n_check`` accepted states with the steps
    the solver took: the library's Newton matrix against I - h beta0 J (same formula, float64) and
    against the central-difference Jacobian of the BDF-2 residual R(d) at d = 0."""
    res = solve_ivp(problem.fun, (problem.t_span[0], t_end), problem.y0, rtol=rtol, atol=problem.atol, jac=problem.jac)
    idx = np.linspace(2, len(res.t) - 1, n_check).astype(int)
    exact, fd, hs = [], [], []
    rng = np.random.default_rng(0)
    for i in idx:
        t, y, h = res.t[i], res.y[:, i], res.t[i] - res.t[i - 1]
        J = problem.jac(t, y)
        M = newton_matrix(J[None], np.array([h]), np.array([J7_ORDER]))[0]
        c = h * BETA0[J7_ORDER]
        scale = np.max(np.abs(M))
        exact.append(float(np.max(np.abs(M - (np.eye(len(y)) - c * J))) / scale))
        psi = rng.normal(size=len(y)) * np.abs(y)  # any history term: it does not enter dR/dd
        R = _bdf2_residual(problem.fun, t, y, psi, c)
        steps = J7_FD_STEP * np.maximum(np.abs(y), 1.0)
        fd.append(float(np.max(np.abs(_central_jacobian(R, np.zeros_like(y), steps) - M)) / scale))
        hs.append(float(h))
    return {
        "exact_error": max(exact),
        "fd_error": max(fd),
        "steps_h": hs,
        "gamma2_over_beta0": float(GAMMA[J7_ORDER] * BETA0[J7_ORDER]),
    }


def _stiff_linear_system(n: int, stiffness: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A = Q diag(lambda) Q^T with lambda log-spaced from -1 to -stiffness (stiffness ratio), Q a
    random orthogonal matrix; returns A (n, n), lambda (n,), y0 (n,)."""
    rng = np.random.default_rng(seed)
    lam = -np.logspace(0.0, math.log10(stiffness), n)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return Q @ np.diag(lam) @ Q.T, lam, rng.normal(size=n)


def _bdf2_step_map(A: np.ndarray, h: float) -> np.ndarray:
    """Constant-step BDF-2 on y' = A y as a linear map of (y_n, y_{n-1}) -> (y_{n+1}, y_n): (2n, 2n).

    From y_{n+1} - 4/3 y_n + 1/3 y_{n-1} = 2/3 h A y_{n+1}: y_{n+1} = N^{-1} (4/3 y_n - 1/3 y_{n-1})
    with N = I - h beta0 A the Newton matrix (beta0 = 2/3).
    """
    n = len(A)
    N_inv = np.linalg.inv(newton_matrix(A[None], np.array([h]), np.array([J7_ORDER]))[0])
    top = np.hstack([4.0 / 3.0 * N_inv, -1.0 / 3.0 * N_inv])
    return np.vstack([top, np.hstack([np.eye(n), np.zeros((n, n))])])


def _spectral_radius(M: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(M))))


def _step_map_spectra(A: np.ndarray, lam_max: float, setting: Mapping[str, Any]) -> dict:
    """Spectral radii of the step maps over h |lambda_max| in [h_min, h_max] (log grid): explicit
    Euler I + h A, backward Euler (I - h A)^{-1} and BDF-2's companion map."""
    hl = np.logspace(math.log10(setting["h_lambda_range"][0]), math.log10(setting["h_lambda_range"][1]), J7_H_GRID)
    n = len(A)
    explicit, backward, bdf2 = [], [], []
    for h in hl / lam_max:
        explicit.append(_spectral_radius(np.eye(n) + h * A))
        backward.append(_spectral_radius(np.linalg.inv(newton_matrix(A[None], np.array([h]), np.array([1]))[0])))
        bdf2.append(_spectral_radius(_bdf2_step_map(A, h)))
    return {"h_lambda": hl.tolist(), "explicit_euler": explicit, "backward_euler": backward, "bdf2": bdf2}


def _step_counts_linear(A: np.ndarray, y0: np.ndarray, setting: Mapping[str, Any]) -> dict:
    """BDF-2 (depthscope) and RK45 (scipy) on y' = A y over [0, t_end] with the same per-step error
    test (depthscope's rtol asks for global accuracy, SciPy's for per-step: `tolerances_for_local`),
    against the exact solution expm(A t_end) y0 (errors relative to max |y0|, the solution's scale)."""
    T, rtol = setting["t_end"], setting["rtol"]
    exact = scipy.linalg.expm(A * T) @ y0
    ours_rtol, ours_atol = tolerances_for_local(rtol, J7_ATOL)
    bdf = solve_ivp(lambda t, y: A @ y, (0.0, T), y0, rtol=ours_rtol, atol=ours_atol, jac=lambda t, y: A)
    rk = scipy.integrate.solve_ivp(lambda t, y: A @ y, (0.0, T), y0, method="RK45", rtol=rtol, atol=J7_ATOL)
    scale = np.max(np.abs(y0))
    return {
        "bdf2_steps": bdf.nsteps,
        "bdf2_nfev": bdf.nfev,
        "bdf2_max_step": float(np.max(np.diff(bdf.t))),
        "bdf2_error": float(np.max(np.abs(bdf.y[:, -1] - exact)) / scale),
        "rk45_steps": len(rk.t) - 1,
        "rk45_nfev": int(rk.nfev),
        "rk45_max_step": float(np.max(np.diff(rk.t))),
        "rk45_error": float(np.max(np.abs(rk.y[:, -1] - exact)) / scale),
        "ok": bool(bdf.success and rk.success),
    }


def _step_counts_rober(setting: Mapping[str, Any]) -> dict:
    """BDF-2 and RK45 on ROBER over [0, rober_t_end] with the same per-step error test; RK45 is the reference."""
    T, rtol = setting["rober_t_end"], setting["rtol"]
    ours_rtol, ours_atol = tolerances_for_local(rtol, np.asarray(ROBER.atol))
    bdf = solve_ivp(ROBER.fun, (0.0, T), ROBER.y0, rtol=ours_rtol, atol=ours_atol, jac=ROBER.jac)
    rk = scipy.integrate.solve_ivp(ROBER.fun, (0.0, T), ROBER.y0, method="RK45", rtol=rtol, atol=ROBER.atol)
    big = np.abs(rk.y[:, -1]) > 10 * np.asarray(ROBER.atol)
    dev = np.abs(bdf.y[big, -1] - rk.y[big, -1]) / np.abs(rk.y[big, -1])
    return {
        "bdf2_steps": bdf.nsteps,
        "bdf2_nfev": bdf.nfev,
        "bdf2_max_step": float(np.max(np.diff(bdf.t))),
        "rk45_steps": len(rk.t) - 1,
        "rk45_nfev": int(rk.nfev),
        "rk45_max_step": float(np.max(np.diff(rk.t))),
        "deviation": float(np.max(dev)),
        "ok": bool(bdf.success and rk.success),
    }


def _measure_j7(setting: Mapping[str, Any], seed: int) -> dict:
    """Newton matrix checks on ROBER, step-map spectra and step counts on a stiff linear system,
    step counts on ROBER."""
    A, lam, y0 = _stiff_linear_system(setting["n"], setting["stiffness"], seed)
    lam_max = float(np.max(np.abs(lam)))
    linear = _step_counts_linear(A, y0, setting)
    return {
        "newton": _newton_matrix_check(ROBER, setting["rober_t_end"], setting["rtol"], setting["n_check"]),
        "lambda_max": lam_max,
        "spectra": _step_map_spectra(A, lam_max, setting),
        "linear": linear,
        "forward_euler_min_steps": math.ceil(setting["t_end"] * lam_max / 2.0),
        "explicit_radius_at_bdf2_max_step": _spectral_radius(np.eye(len(A)) + linear["bdf2_max_step"] * A),
        "rober": _step_counts_rober(setting),
    }


def _judge_j7(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    nw, sp, lin, rob = m["newton"], m["spectra"], m["linear"], m["rober"]
    if nw["exact_error"] > J7_EXACT_TOL or nw["fd_error"] > J7_FD_TOL:
        return refuted(
            f"BDF-2's Newton matrix is not I - h beta0 J: relative error {nw['exact_error']:.2g} against the formula, "
            f"{nw['fd_error']:.2g} against the residual's central-difference Jacobian"
        )
    if not (lin["ok"] and rob["ok"]):
        return refuted("a solver failed to reach the end of the interval")
    rho = max(sp["bdf2"])
    if rho > J7_STABLE:
        return refuted(f"BDF-2's step map has spectral radius {rho:.6g} > 1 at some h |lambda_max| in the grid")
    if max(lin["bdf2_error"], rob["deviation"]) > J7_ACCURACY:
        return refuted(
            f"BDF-2's large steps were stable but wrong: relative error {lin['bdf2_error']:.2g} (linear), {rob['deviation']:.2g} (ROBER)"
        )
    ratios = {
        "linear": lin["bdf2_max_step"] / lin["rk45_max_step"],
        "ROBER": rob["bdf2_max_step"] / rob["rk45_max_step"],
    }
    lam = m["lambda_max"]
    numbers = (
        f"stiffness ratio {setting['stiffness']:g}: largest step h |lambda_max| = {lin['bdf2_max_step'] * lam:.3g} for BDF-2 vs "
        f"{lin['rk45_max_step'] * lam:.3g} for RK45 (x{ratios['linear']:.3g}; {lin['bdf2_steps']} vs {lin['rk45_steps']} steps over "
        f"t <= {setting['t_end']:g}, forward Euler needs >= {m['forward_euler_min_steps']}); ROBER to t = {setting['rober_t_end']:g}: "
        f"largest step {rob['bdf2_max_step']:.3g} vs {rob['rk45_max_step']:.3g} (x{ratios['ROBER']:.3g}; {rob['bdf2_steps']} vs "
        f"{rob['rk45_steps']} steps)"
    )
    if min(ratios.values()) < J7_STEP_RATIO_MIN:
        return refuted(
            f"the explicit method's steps were not much smaller than BDF-2's with the same per-step error test: {numbers}"
        )
    return confirmed(
        f"the Newton matrix equals I - h beta0 J (rel. error {nw['exact_error']:.1g}; {nw['fd_error']:.1g} against the residual's "
        f"finite-difference Jacobian) at {len(nw['steps_h'])} ROBER states; BDF-2's step map has spectral radius <= {rho:.6f} for "
        f"h |lambda_max| up to {sp['h_lambda'][-1]:g}, explicit Euler's reaches {max(sp['explicit_euler']):.3g} (I + hA at BDF-2's "
        f"largest step: {m['explicit_radius_at_bdf2_max_step']:.3g}); BDF-2's end state is within {lin['bdf2_error']:.1g} of expm(At) y0 "
        f"and {rob['deviation']:.1g} of RK45 on ROBER; {numbers}"
    )


def _plot_j7(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    sp = m["spectra"]
    ax.plot(sp["h_lambda"], sp["explicit_euler"], "o-", ms=3, label="explicit Euler, I + hJ")
    ax.plot(sp["h_lambda"], sp["backward_euler"], "s-", ms=3, label="backward Euler, (I − hJ)⁻¹")
    ax.plot(sp["h_lambda"], sp["bdf2"], "^-", ms=3, label="BDF-2 companion map")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.axvline(2.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("h |λ_max|")
    ax.set_ylabel("spectral radius of the step map")
    ax.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="J7",
    statement=(
        "BDF-2's Newton matrix is I - h beta0 J_f; the implicit method stays stable with large steps on stiff problems "
        "where explicit methods need tiny ones."
    ),
    source="001",
    expected=(
        "depthscope's BDF-2 Newton matrix equals I - h (2/3) J and the Jacobian of its residual; its step map has spectral "
        "radius <= 1 for all h on a stiff linear system while explicit Euler's exceeds 1 beyond h |lambda| = 2; with the same "
        "per-step error test BDF-2's largest step is >= 10x RK45's on a stiff linear system and on ROBER, and BDF-2 stays accurate"
    ),
    refuted_if=(
        f"the Newton matrix differs from I - h beta0 J by more than {J7_EXACT_TOL:g} (or from the residual's central-"
        f"difference Jacobian by more than {J7_FD_TOL:g}), relative; or BDF-2's step map has spectral radius > 1 + 1e-12 "
        f"at some h; or BDF-2's end state is off by more than {J7_ACCURACY:g}; or BDF-2's largest step is less than "
        f"{J7_STEP_RATIO_MIN:g}x RK45's on either problem"
    ),
    presets={
        "tiny": {
            "n": 6,
            "stiffness": 1e3,
            "t_end": 3.0,
            "rtol": 1e-4,
            "rober_t_end": 1.0,
            "n_check": 5,
            "h_lambda_range": [0.1, 1e4],
        },
        "quick": {
            "n": 8,
            "stiffness": 1e4,
            "t_end": 10.0,
            "rtol": 1e-4,
            "rober_t_end": 10.0,
            "n_check": 10,
            "h_lambda_range": [0.1, 1e5],
        },
        "full": {
            "n": 16,
            "stiffness": 1e5,
            "t_end": 10.0,
            "rtol": 1e-4,
            "rober_t_end": 40.0,
            "n_check": 40,
            "h_lambda_range": [0.1, 1e6],
        },
    },
    measure=_measure_j7,
    judge=_judge_j7,
    plot=_plot_j7,
    counterexample={"stiffness": 1.0},
    references=(
        "Hairer & Wanner, Solving Ordinary Differential Equations II (stiff problems; ROBER)",
        "Shampine & Reichelt 1997, The MATLAB ODE suite (quasi-constant-step BDF)",
    ),
)
