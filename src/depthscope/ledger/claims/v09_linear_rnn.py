"""Claim V9 (seed 003): in a linear RNN, spectral radius < 1 makes the gradient vanish, > 1 explode."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope import dynamics
from depthscope.estimators import lyapunov
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._vanishing_common import (
    EXPLODING,
    SOURCE,
    VANISHING,
    _child_seed,
    _gain_class,
    _gradient_log_gain,
    _recurrent_matrix,
    _unit,
)
from depthscope.probing import VERDICT_LOG_GAIN

V9_TRANSIENT_FACTOR = math.exp(VERDICT_LOG_GAIN)  # a rho < 1 gradient that first grows 10x grows "large"
V9_LYAPUNOV_TOL = 0.02  # |lambda_1 - ln rho| per step after lyap_steps steps


def _spectral_radius(W: torch.Tensor) -> float:
    return float(torch.linalg.eigvals(W).abs().max())


def _power_norms(W: torch.Tensor, steps: int) -> list[float]:
    """||W^t||_2 for t = 1..steps: the largest factor by which t steps can scale a gradient."""
    P, out = torch.eye(W.shape[0], dtype=W.dtype), []
    for _ in range(steps):
        P = W @ P
        out.append(float(torch.linalg.matrix_norm(P, ord=2)))
    return out


def _measure_v9(setting: Mapping[str, Any], seed: int) -> dict:
    """Per spectral radius rho: the linear RNN h_t = W h_{t-1} (`dynamics.rnn_linear`). The gradient of
    <h_T, u> (u a random unit vector) with respect to h_0 by backpropagation over T = horizon steps; the
    worst case ||W^t||_2 for t <= T; the top Lyapunov exponent (`depthscope.lyapunov`, lyap_steps steps
    after lyap_transient) against ln rho."""
    gen = torch.Generator().manual_seed(seed)
    n, T = setting["n"], setting["horizon"]
    rows = []
    for rho in setting["radii"]:
        W = _recurrent_matrix(n, rho, setting["shear"], _child_seed(gen))
        h0 = torch.zeros(1, n, dtype=torch.float64)
        log_gain = _gradient_log_gain(dynamics.rnn_linear(W, T), h0, _unit(n, gen))
        norms = _power_norms(W, T)
        lyap = lyapunov(
            dynamics.rnn_linear(W, setting["lyap_steps"]),
            h0,
            k=1,
            seed=_child_seed(gen),
            transient=setting["lyap_transient"],
        )
        rows.append(
            {
                "rho": _spectral_radius(W),
                "operator_norm": float(torch.linalg.matrix_norm(W, ord=2)),
                "log_gain": log_gain,
                "class": _gain_class(log_gain),
                "power_norms": norms,
                "peak": max(norms),
                "peak_step": int(np.argmax(norms)) + 1,
                "lyapunov": float(lyap.exponents[0]),
            }
        )
    return {"systems": rows}


def _judge_v9(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    T = setting["horizon"]
    rows = m["systems"]
    for r in rows:
        expected = VANISHING if r["rho"] < 1 else EXPLODING
        if r["class"] != expected:
            return refuted(
                f"rho(W) = {r['rho']:.3g} (||W||_2 = {r['operator_norm']:.3g}): over T = {T} steps the gradient "
                f"changed "
                f"by e^{r['log_gain']:.2f}, {r['class']} rather than {expected} (peak ||W^t||_2 = {r['peak']:.3g} "
                f"at t = {r['peak_step']})"
            )
    lyap_err = max(abs(r["lyapunov"] - math.log(r["rho"])) for r in rows)
    summary = ", ".join(f"rho {r['rho']:.3g}: e^{r['log_gain']:.1f}" for r in rows)
    lyap = f"top Lyapunov exponents match ln rho to {lyap_err:.2g}" + (
        "" if lyap_err <= V9_LYAPUNOV_TOL else f" (beyond the {V9_LYAPUNOV_TOL:g} expected)"
    )
    stable = [r for r in rows if r["rho"] < 1]
    worst = max(stable, key=lambda r: r["peak"]) if stable else None
    if worst is not None and worst["peak"] > V9_TRANSIENT_FACTOR:
        return qualified(
            f"over T = {T} steps every gradient vanished (rho < 1) or exploded (rho > 1) ({summary}; {lyap}), but "
            f"only asymptotically: with rho = {worst['rho']:.3g}, ||W^t||_2 first grew to {worst['peak']:.3g} at "
            f"t = {worst['peak_step']} (non-normal transient)"
        )
    transient = f"; the largest transient for rho < 1 is ||W^t||_2 = {worst['peak']:.3g}" if worst else ""
    return confirmed(f"over T = {T} steps: {summary}; {lyap}{transient}")


def _plot_v9(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    t = np.arange(1, setting["horizon"] + 1)
    for i, r in enumerate(m["systems"]):
        ax.plot(t, np.log(r["power_norms"]), color=f"C{i}", label=f"ρ={r['rho']:.3g}: log ||W^t||₂")
        ax.plot(t, t * math.log(r["rho"]), "--", color=f"C{i}", lw=1)
        ax.plot([setting["horizon"]], [r["log_gain"]], "o", color=f"C{i}")
    for level in (-VERDICT_LOG_GAIN, VERDICT_LOG_GAIN):
        ax.axhline(level, color="k", lw=0.8, ls=":")
    ax.set_xlabel("t (steps)")
    ax.set_ylabel("natural log")
    ax.set_title("dashed: t ln ρ; dots: random-cotangent gradient at T", fontsize=9)
    ax.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="V9",
    statement="Linear RNN h_T = W^T h_0: spectral radius < 1 vanishes, > 1 explodes.",
    source=SOURCE,
    expected="for random W rescaled to spectral radius rho, the gradient through T steps falls below 1/10 for "
    "rho < 1 and grows beyond 10 for rho > 1, at the rate ln rho per step (the top Lyapunov exponent)",
    refuted_if="for some rho < 1 the gradient over the horizon T does not fall below 1/10 of the output "
    "gradient, or for some rho > 1 it does not grow beyond 10x; qualified if a rho < 1 gradient first grows by "
    "more than 10x (a non-normal transient) before vanishing",
    presets={
        "tiny": {
            "n": 16,
            "radii": [0.8, 0.9, 1.1, 1.25],
            "horizon": 60,
            "shear": 0.0,
            "lyap_steps": 400,
            "lyap_transient": 100,
        },
        "quick": {
            "n": 32,
            "radii": [0.8, 0.9, 0.95, 1.05, 1.1, 1.25],
            "horizon": 200,
            "shear": 0.0,
            "lyap_steps": 2000,
            "lyap_transient": 500,
        },
        "full": {
            "n": 128,
            "radii": [0.8, 0.9, 0.95, 0.99, 1.01, 1.05, 1.1, 1.25],
            "horizon": 1000,
            "shear": 0.0,
            "lyap_steps": 10000,
            "lyap_transient": 2000,
        },
    },
    measure=_measure_v9,
    judge=_judge_v9,
    plot=_plot_v9,
    counterexample={"shear": 3.0},
    references=(
        "Pascanu, Mikolov & Bengio 2013, On the difficulty of training recurrent neural networks",
        "Trefethen & Embree 2005, Spectra and Pseudospectra: transient growth of non-normal matrices",
    ),
)
