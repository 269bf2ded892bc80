"""Claim V10 (seed 003): the sign of the top Lyapunov exponent says vanishing, exploding or marginal."""

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
    MARGINAL,
    SOURCE,
    VANISHING,
    _child_seed,
    _float64,
    _gain_class,
    _gradient_log_gain,
    _recurrent_matrix,
    _shear,
    _unit,
)
from depthscope.probing import VERDICT_LOG_GAIN
from depthscope.zoo.rnn import recurrent_weight

V10_DECISIVE = 2 * VERDICT_LOG_GAIN  # |lambda_1 T| beyond ln 100: the exponent decisively predicts a class
V10_ZERO_BAND = VERDICT_LOG_GAIN / 2  # |lambda_1 T| within ln sqrt(10): it decisively predicts "marginal"
UNDECIDED = "undecided"


def _predicted_class(exponent: float, horizon: int) -> str:
    """The class the top exponent predicts for the gain e^(lambda_1 T), with a factor-10 buffer against the
    measured thresholds: ``undecided`` when the horizon is too short for the exponent to decide."""
    x = exponent * horizon
    if x < -V10_DECISIVE:
        return VANISHING
    if x > V10_DECISIVE:
        return EXPLODING
    if abs(x) < V10_ZERO_BAND:
        return MARGINAL
    return UNDECIDED


def _v10_systems(setting: Mapping[str, Any], gen: torch.Generator) -> list[dict]:
    """The systems as ``{"name", "kind", "build": steps -> Chain, "n", ...}``: linear RNNs of spectral
    radius rho (sheared by ``shear``), the orthogonal linear RNN (rho = 1, every exponent 0), tanh RNNs
    h_t = tanh(W h_{t-1}) with W ~ N(0, g^2/n), and rate networks (Euler steps of h' = -h + J tanh h)."""
    systems = []
    for rho in setting["linear_radii"]:
        W = _recurrent_matrix(setting["linear_n"], rho, setting["shear"], _child_seed(gen))
        systems.append(
            {
                "name": f"linear rho={rho:g}",
                "kind": "linear",
                "n": setting["linear_n"],
                "build": lambda k, W=W: dynamics.rnn_linear(W, k),
            }
        )
    with _float64():
        Q = recurrent_weight(setting["linear_n"], 1.0, "orthogonal", torch.Generator().manual_seed(_child_seed(gen)))
    Q = _shear(Q, setting["shear"])
    systems.append(
        {
            "name": "linear orthogonal",
            "kind": "linear",
            "n": setting["linear_n"],
            "build": lambda k, Q=Q: dynamics.rnn_linear(Q, k),
        }
    )
    for g in setting["tanh_gains"]:
        with _float64():
            W = recurrent_weight(setting["tanh_n"], g, "gaussian", torch.Generator().manual_seed(_child_seed(gen)))
        systems.append(
            {
                "name": f"tanh g={g:g}",
                "kind": "tanh",
                "n": setting["tanh_n"],
                "build": lambda k, W=W: dynamics.rnn_tanh(W, k),
            }
        )
    for g in setting["rate_gains"]:
        J = dynamics.rate_coupling(setting["rate_n"], g, _child_seed(gen))
        systems.append(
            {
                "name": f"rate g={g:g}",
                "kind": "rate",
                "n": setting["rate_n"],
                "g": g,
                "J": J,
                "build": lambda k, J=J: dynamics.rate_chain(J, setting["dt"], k),
            }
        )
    return systems


def _rate_spectrum(system: dict, states: list[torch.Tensor], res, setting: Mapping[str, Any]) -> dict:
    """A rate network's full Lyapunov spectrum ``res`` (per step) and the exact identity sum_i lambda_i =
    mean log |det J_step| over the averaged steps (`dynamics.rate_step_log_det` at their input states)."""
    dt, skip = setting["dt"], setting["lyap_transient"]
    log_det = float(dynamics.rate_step_log_det(system["J"], dt, torch.cat(states[skip:-1])).mean())
    exps = res.exponents
    return {
        "exponents_per_time": (exps / dt).tolist(),
        "mean_per_time": float(exps.mean()) / dt,
        "log_det_mean_per_time": log_det / (system["n"] * dt),
        "sum_minus_log_det": float(exps.sum()) - log_det,
        "euler_formula": math.log(1 - dt) / dt,
        "continuous_time": -1.0,
    }


def _measure_v10(setting: Mapping[str, Any], seed: int) -> dict:
    """Per system: from a state after ``burn_in`` steps (0 for the linear ones) one run of lyap_steps steps;
    the top Lyapunov exponent per step averaged over its steps after lyap_transient (`depthscope.lyapunov`;
    the full spectrum for rate networks), and the log gain of the gradient of <h_T, u> (u a random unit
    vector) with respect to the state T = horizon steps earlier, by backpropagation over the run's last T
    steps, which lie inside the exponent's averaging window."""
    T, steps, skip = setting["horizon"], setting["lyap_steps"], setting["lyap_transient"]
    if T > steps - skip:
        raise ValueError(f"horizon {T} must fit in the averaged window of {steps - skip} steps")
    gen = torch.Generator().manual_seed(seed)
    rows, spectra = [], {}
    for system in _v10_systems(setting, gen):
        n = system["n"]
        h = torch.zeros(1, n, dtype=torch.float64)
        if system["kind"] != "linear":
            with torch.no_grad():
                h = system["build"](setting["burn_in"])(torch.randn(1, n, generator=gen, dtype=torch.float64))
        run = system["build"](steps)
        res = lyapunov(run, h, k=n if system["kind"] == "rate" else 1, seed=_child_seed(gen), transient=skip)
        with torch.no_grad():
            states = run.states(h)
        if system["kind"] == "rate":
            spectra[system["name"]] = _rate_spectrum(system, states, res, setting)
        top = float(res.exponents[0])
        log_gain = _gradient_log_gain(system["build"](T), states[steps - T], _unit(n, gen))
        rows.append(
            {
                "name": system["name"],
                "top_exponent": top,
                "predicted": _predicted_class(top, T),
                "log_gain": log_gain,
                "measured": _gain_class(log_gain),
            }
        )
    return {"systems": rows, "rate_spectra": spectra}


def _judge_v10(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    T = setting["horizon"]
    rows = m["systems"]
    decided = [r for r in rows if r["predicted"] != UNDECIDED]
    wrong = [r for r in decided if r["predicted"] != r["measured"]]
    rate = "; ".join(
        f"rate {name.split()[-1]}: mean exponent {s['mean_per_time']:.5f}/time vs ln(1-dt)/dt = "
        f"{s['euler_formula']:.5f} (off by {s['mean_per_time'] - s['euler_formula']:+.1e}) and -1 in continuous time; "
        f"sum - mean log|det J| = {s['sum_minus_log_det']:.1e}"
        for name, s in m["rate_spectra"].items()
    )
    if wrong:
        text = "; ".join(
            f"{r['name']}: lambda_1 = {r['top_exponent']:+.4f}/step predicts {r['predicted']}, the "
            f"gradient changed by e^{r['log_gain']:.2f} over {T} steps ({r['measured']})"
            for r in wrong
        )
        return refuted(f"{len(wrong)}/{len(decided)} decided systems contradict the sign rule: {text}")
    table = ", ".join(f"{r['name']}: {r['top_exponent']:+.3f} -> e^{r['log_gain']:.1f}" for r in rows)
    skipped = [r["name"] for r in rows if r["predicted"] == UNDECIDED]
    note = f" ({', '.join(skipped)}: |lambda_1 T| too close to ln 10 to decide)" if skipped else ""
    untested = [c for c in (VANISHING, MARGINAL, EXPLODING) if c not in {r["predicted"] for r in decided}]
    body = (
        f"the top exponent per step predicted the gradient's class over {T} steps in all {len(decided)} decided "
        f"systems{note} ({table}). {rate}"
    )
    if untested:
        return qualified(f"{body}; no system decisively tested: {', '.join(untested)}")
    return confirmed(body)


def _plot_v10(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    T = setting["horizon"]
    for i, r in enumerate(m["systems"]):
        axes[0].plot(r["top_exponent"] * T, r["log_gain"], "o", color=f"C{i % 10}", label=r["name"])
    lo = min(min(r["top_exponent"] * T for r in m["systems"]), -VERDICT_LOG_GAIN)
    hi = max(max(r["top_exponent"] * T for r in m["systems"]), VERDICT_LOG_GAIN)
    axes[0].plot([lo, hi], [lo, hi], "k--", lw=1)
    axes[0].axhspan(-VERDICT_LOG_GAIN, VERDICT_LOG_GAIN, color="0.9")
    axes[0].set_xlabel(f"λ₁ × T (T = {T})")
    axes[0].set_ylabel("log gradient gain over T")
    axes[0].legend(fontsize=6)
    for name, s in m["rate_spectra"].items():
        ex = np.asarray(s["exponents_per_time"])
        axes[1].plot(np.arange(1, ex.size + 1) / ex.size, ex, ".-", ms=3, label=name)
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_xlabel("i / N")
    axes[1].set_ylabel("λ_i (per unit time)")
    axes[1].set_title(f"rate networks, N = {setting['rate_n']}, dt = {setting['dt']:g}", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


_V10_COMMON = {"linear_radii": [0.9, 1.1], "tanh_gains": [0.5, 2.0], "rate_gains": [0.5, 4.0], "dt": 0.1, "shear": 0.0}

EXPERIMENT = Experiment(
    id="V10",
    statement="Lyapunov exponent of the backward dynamics: negative = vanishing, positive = exploding, "
    "zero = marginal (the goal of modern architectures).",
    source=SOURCE,
    expected="linear RNNs (rho 0.9, 1, 1.1), tanh RNNs (g 0.5, 2) and rate networks (g 0.5, 4): the top "
    "exponent lambda_1 (per step, from a long run) predicts the gradient over T steps: e^(lambda_1 T) < 1/100 -> "
    "below 1/10, > 100 -> above 10, within [1/sqrt(10), sqrt(10)] -> within [1/10, 10]; for rate networks "
    "sum lambda_i = mean log|det J_step| exactly",
    refuted_if="in some system whose e^(lambda_1 T) is below 1/100, above 100 or within [1/sqrt(10), sqrt(10)], "
    "the gradient's gain over the horizon T is not below 1/10, above 10 or within [1/10, 10] respectively; "
    "qualified if some class has no decisively predicted system",
    presets={
        "tiny": {
            **_V10_COMMON,
            "linear_n": 16,
            "tanh_n": 16,
            "rate_n": 16,
            "horizon": 200,
            "burn_in": 200,
            "lyap_steps": 400,
            "lyap_transient": 100,
        },
        "quick": {
            **_V10_COMMON,
            "linear_n": 32,
            "tanh_n": 64,
            "rate_n": 100,
            "horizon": 400,
            "burn_in": 500,
            "lyap_steps": 2000,
            "lyap_transient": 500,
        },
        "full": {
            **_V10_COMMON,
            "linear_n": 128,
            "tanh_n": 256,
            "rate_n": 100,
            "horizon": 1000,
            "burn_in": 2000,
            "lyap_steps": 10000,
            "lyap_transient": 2000,
        },
    },
    measure=_measure_v10,
    judge=_judge_v10,
    plot=_plot_v10,
    counterexample={"shear": 3.0},
    references=(
        "Engelken, Wolf & Abbott 2020, Lyapunov spectra of chaotic recurrent neural networks: the mean exponent of "
        "h' = -h + J tanh(h) is -1/tau (continuous time); for Euler steps ln(1 - dt)/dt holds only to first order",
        "Benettin, Galgani, Giorgilli & Strelcyn 1980 (QR method for Lyapunov spectra)",
    ),
)
