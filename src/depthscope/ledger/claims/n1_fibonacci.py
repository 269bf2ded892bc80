"""Claim N1 (seed 002): the Fibonacci recurrence grows like phi^n and turns toward phi's eigenvector."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.dynamics import FIBONACCI, analyze_linear_recurrence, fibonacci
from depthscope.estimators import lyapunov
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._norm_common import DTYPE, NORM_PRESERVATION_PAPER, PLOT_FLOOR

PHI = (1.0 + math.sqrt(5.0)) / 2.0
PSI = (1.0 - math.sqrt(5.0)) / 2.0
# float64 eigenvalues of a 2 x 2 matrix are exact to a few ulps.
N1_EIGEN_ATOL = 1e-12
# The growth rate fitted to ln ||x_n|| over the second half of the run must match ln phi this well.
N1_GROWTH_RTOL = 1e-3
# "Aligned": the angle between x_n and phi's eigenvector line is below this (radians).
N1_ALIGNED_ANGLE = 1e-8
# Angles below this are float64 rounding of the unit state (the floor is ~2e-16); the decay rate
# of tan(angle) is fitted above it only.
N1_ANGLE_FLOOR = 1e-13
# The fitted decay rate of ln tan(angle) must match ln(|psi| / phi) this well (relative).
N1_RATE_RTOL = 1e-2
# Benettin's estimate after the frame has aligned: rounding only.
N1_LYAPUNOV_ATOL = 1e-9
# Steps that align the random Benettin frame before averaging: its error shrinks like
# (|psi| / phi)^k = 0.38^k, below 1e-20 after 50 steps.
N1_LYAPUNOV_TRANSIENT = 50
# Steps over which a float64 start on psi's eigenvector is followed (it leaves after ~40).
N1_ESCAPE_STEPS = 120
# The trajectory from psi's eigenvector counts as "escaped" once its angle to phi's line is below this.
N1_ESCAPE_ANGLE = math.pi / 4


def _n1_start(start: str) -> torch.Tensor:
    """The initial state ``(2,)``: "unit" = (1, 0), so that x_n = (F_{n+1}, F_n); "psi" = the unit
    eigenvector of psi, rounded to float64 (in exact arithmetic its trajectory never aligns)."""
    if start == "unit":
        return torch.tensor([1.0, 0.0], dtype=DTYPE)
    if start == "psi":
        v = torch.tensor([PSI, 1.0], dtype=DTYPE)  # A (psi, 1) = (psi + 1, psi) = psi (psi, 1)
        return v / v.norm()
    raise ValueError(f"start must be 'unit' or 'psi', got {start!r}")


def _fit_slope(y: np.ndarray) -> float:
    """Least-squares slope of ``y: (m,)`` against its index 0..m-1 (nan when m < 2)."""
    if len(y) < 2:
        return math.nan
    return float(np.polyfit(np.arange(len(y), dtype=float), y, 1)[0])


def _first_below(values: np.ndarray, level: float) -> int | None:
    """Index of the first entry of ``values: (m,)`` below ``level``; None if there is none."""
    hits = np.nonzero(values < level)[0]
    return int(hits[0]) if hits.size else None


def _measure_n1(setting: Mapping[str, Any], seed: int) -> dict:
    """Eigenvalues, renormalised trajectory and Lyapunov spectrum of the Fibonacci recurrence."""
    n = setting["n_steps"]
    run = analyze_linear_recurrence(FIBONACCI, _n1_start(setting["start"]), n)
    eig = np.sort(run.eigenvalues.real.numpy())[::-1]
    log_norms = run.log_norms.numpy()
    angles = run.angles.numpy()
    steps = np.arange(n + 1)
    second_half = log_norms[n // 2 :]
    resolved = (angles > N1_ANGLE_FLOOR) & (angles < math.pi / 2)
    log_tan = np.log(np.tan(angles[resolved]))
    rate = float(np.polyfit(steps[resolved], log_tan, 1)[0]) if resolved.sum() >= 2 else math.nan

    lyap = lyapunov(
        fibonacci(setting["lyap_steps"]),
        torch.zeros(1, 2, dtype=DTYPE),  # the Jacobian is A everywhere; x = 0 never overflows
        k=2,
        seed=seed,
        transient=N1_LYAPUNOV_TRANSIENT,
    ).exponents.tolist()

    escape = analyze_linear_recurrence(FIBONACCI, _n1_start("psi"), N1_ESCAPE_STEPS).angles.numpy()
    return {
        "eigenvalues": eig.tolist(),
        "growth_rate": _fit_slope(second_half),
        "log_norm_offset": (log_norms - steps * math.log(PHI)).tolist(),
        "angles": angles.tolist(),
        "final_angle": float(angles[-1]),
        "alignment_rate": rate,
        "lyapunov": lyap,
        "psi_start_angles": escape.tolist(),
        "psi_start_escape_step": _first_below(escape, N1_ESCAPE_ANGLE),
        "psi_start_aligned_step": _first_below(escape, N1_ALIGNED_ANGLE),
    }


def _judge_n1(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    ln_phi = math.log(PHI)
    rate_pred = math.log(abs(PSI) / PHI)
    eig_err = max(abs(m["eigenvalues"][0] - PHI), abs(m["eigenvalues"][1] - PSI))
    lyap_err = max(abs(m["lyapunov"][0] - ln_phi), abs(m["lyapunov"][1] + ln_phi))
    growth_err = abs(m["growth_rate"] - ln_phi) / ln_phi
    n = setting["n_steps"]
    if eig_err > N1_EIGEN_ATOL:
        return refuted(f"eigenvalues {m['eigenvalues']} differ from (phi, psi) by {eig_err:.3g}")
    if lyap_err > N1_LYAPUNOV_ATOL:
        return refuted(f"Lyapunov exponents {m['lyapunov']} differ from +-ln phi = +-{ln_phi:.6f} by {lyap_err:.3g}")
    if growth_err > N1_GROWTH_RTOL or m["final_angle"] > N1_ALIGNED_ANGLE:
        return refuted(
            f"from the '{setting['start']}' start the state grew at {m['growth_rate']:.6f} per step "
            f"(ln phi = {ln_phi:.6f}) and its angle to phi's eigenvector after {n} steps was "
            f"{m['final_angle']:.3g} rad: it did not grow like phi^n and align (in float64 a start on psi's "
            f"eigenvector escapes it after {m['psi_start_escape_step']} steps, through rounding alone)"
        )
    eigen = f"eigenvalues {m['eigenvalues'][0]:.12f}, {m['eigenvalues'][1]:.12f} (error {eig_err:.1g})"
    growth = (
        f"ln||x_n|| grows at {m['growth_rate']:.9f} per step (ln phi = {ln_phi:.9f}) and ln||x_n|| - n ln phi "
        f"settles at {m['log_norm_offset'][-1]:.9f}"
    )
    lyap = f"Lyapunov spectrum {m['lyapunov'][0]:+.9f}, {m['lyapunov'][1]:+.9f}"
    if not abs(m["alignment_rate"] - rate_pred) <= N1_RATE_RTOL * abs(rate_pred):
        return qualified(
            f"{eigen}; {growth}; {lyap}; the state aligned (angle {m['final_angle']:.2g} rad after {n} steps) "
            f"but ln tan(angle) fell at {m['alignment_rate']:.4f} per step, not ln(|psi|/phi) = {rate_pred:.4f}"
        )
    return confirmed(
        f"{eigen}; {growth}; {lyap}; the angle to phi's eigenvector fell as (|psi|/phi)^n "
        f"(fitted rate {m['alignment_rate']:.4f}, predicted {rate_pred:.4f}) to {m['final_angle']:.2g} rad "
        f"after {n} steps. Exception measured: a float64 start on psi's eigenvector stays on it until "
        f"rounding error has grown, escaping after {m['psi_start_escape_step']} steps"
    )


def _plot_n1(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    offset = np.asarray(m["log_norm_offset"])
    ax1.plot(np.arange(len(offset)), offset, lw=1.5, label=f"start '{setting['start']}'")
    ax1.axhline(0.5 * math.log(PHI / math.sqrt(5.0)), color="k", ls="--", lw=1, label="½ ln(φ/√5) (start (1, 0))")
    ax1.set_xlabel("step n")
    ax1.set_ylabel("ln‖x_n‖ − n ln φ")
    ax1.legend(fontsize=8)
    angles = np.asarray(m["angles"])
    psi_angles = np.asarray(m["psi_start_angles"])
    n = np.arange(len(angles))
    ax2.semilogy(n, np.maximum(angles, PLOT_FLOOR), lw=1.5, label=f"start '{setting['start']}'")
    ax2.semilogy(np.arange(len(psi_angles)), np.maximum(psi_angles, PLOT_FLOOR), lw=1, label="start on ψ's eigenvector")
    predicted = np.arctan(np.tan(angles[0]) * (abs(PSI) / PHI) ** n) if angles[0] < math.pi / 2 else None
    if predicted is not None:
        ax2.semilogy(n, np.maximum(predicted, PLOT_FLOOR), "k--", lw=1, label="tan θ₀ (|ψ|/φ)ⁿ")
    ax2.set_xlabel("step n")
    ax2.set_ylabel("angle to φ's eigenvector (rad)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="N1",
    statement=(
        "Fibonacci matrix [[1,1],[1,0]] has eigenvalues phi ~ 1.618 and psi ~ -0.618; the state grows "
        "like phi^n and aligns with phi's eigenvector."
    ),
    source="002",
    expected=(
        "eigenvalues (1 +- sqrt 5)/2; ln||x_n|| - n ln phi converges (growth rate ln phi = 0.4812); the angle "
        "to phi's eigenvector decays like (|psi|/phi)^n = 0.382^n; Lyapunov spectrum +-ln phi"
    ),
    refuted_if=(
        "the eigenvalues differ from (1 +- sqrt 5)/2 by more than 1e-12, or the growth rate fitted over the "
        "second half of the run differs from ln phi by more than 0.1%, or the angle to phi's eigenvector after "
        "n steps exceeds 1e-8 rad, or the Lyapunov exponents differ from +-ln phi by more than 1e-9"
    ),
    presets={
        "tiny": {"n_steps": 30, "lyap_steps": 200, "start": "unit"},
        "quick": {"n_steps": 200, "lyap_steps": 5000, "start": "unit"},
        "full": {"n_steps": 2000, "lyap_steps": 100000, "start": "unit"},
    },
    measure=_measure_n1,
    judge=_judge_n1,
    plot=_plot_n1,
    counterexample={"start": "psi"},
    references=(NORM_PRESERVATION_PAPER,),
)
