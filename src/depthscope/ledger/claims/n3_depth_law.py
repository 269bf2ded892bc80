"""Claim N3 (seed 002): the per-block gradient norm ratio of a residual network nears 1 as depth grows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._norm_common import DTYPE, NORM_PRESERVATION_PAPER
from depthscope.ledger.claims._seeds import run_seeds
from depthscope.probing import probe
from depthscope.zoo import create_model

# Branch scale that shrinks with depth: the zoo's resnet_mlp default (Hayou et al. 2021).
N3_DEPTH_SCALED = "1/sqrt(L)"
# delta "decreases with depth" when the exponent b of a power-law fit delta ~ L^b is below this.
N3_DECAY_EXPONENT = -0.1
# A law "fits clearly better" than c log(2L)/L when its RMS log error is smaller by this factor.
N3_FIT_MARGIN = 1.25
# The candidate laws delta(L) = c g(L), each with one fitted constant c.
N3_LAWS = {
    "c log(2L)/L": lambda L: np.log(2.0 * L) / L,
    "c/sqrt(L)": lambda L: 1.0 / np.sqrt(L),
    "c/L": lambda L: 1.0 / L,
}
N3_THEORY_LAW = "c log(2L)/L"


def _branch_scale(rule: str | float, depth: int) -> float:
    """alpha for a network of ``depth`` blocks: 1/sqrt(depth) for N3_DEPTH_SCALED, else the number."""
    return 1.0 / math.sqrt(depth) if rule == N3_DEPTH_SCALED else float(rule)


def max_ratio_deviation(report) -> float:
    """delta = max_k |grad_ratio_k - 1| over the residual blocks (steps ``blocks.*``) of a probe report."""
    return max(abs(b.grad_ratio - 1.0) for b in report.blocks if b.name.startswith("blocks."))


def _delta_curve(setting: Mapping[str, Any], rule: str | float, seed: int) -> list[list[float]]:
    """delta for every depth and network seed, ``(len(depths), seeds)``: zoo ``resnet_mlp`` (float64,
    ReLU, critical init) with branch scale ``rule``, probed at a random batch ``(batch, width)``."""
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for depth in setting["depths"]:
        row = []
        for run_seed in run_seeds(seed, setting["seeds"]):
            torch.manual_seed(run_seed)
            model = create_model(
                "resnet_mlp", depth=depth, width=setting["width"], alpha=_branch_scale(rule, depth)
            ).to(DTYPE)
            x = torch.randn(setting["batch"], setting["width"], generator=gen, dtype=DTYPE)
            row.append(max_ratio_deviation(probe(model, x, lyapunov=0, sigma_min=False, seed=seed)))
        curve.append(row)
    return curve


def fit_law(depths, delta, law: str) -> tuple[float, float]:
    """Least squares of ln delta = ln c + ln g(L) for ``N3_LAWS[law]``: returns (c, RMS log error).

    ``depths``, ``delta``: ``(m,)`` each."""
    L = np.asarray(depths, dtype=float)
    resid = np.log(np.asarray(delta, dtype=float)) - np.log(N3_LAWS[law](L))
    log_c = float(resid.mean())
    return math.exp(log_c), float(np.sqrt(np.mean((resid - log_c) ** 2)))


def power_law_exponent(depths, delta) -> tuple[float, float]:
    """The exponent b of ln delta = a + b ln L (least squares) and the fit's R^2; ``(m,)`` each."""
    x = np.log(np.asarray(depths, dtype=float))
    y = np.log(np.asarray(delta, dtype=float))
    b, a = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - a - b * x) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float(b), 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan


def _curve_summary(depths, curve: list[list[float]]) -> dict:
    """Mean delta per depth, the three one-constant fits and the free power law."""
    mean = [float(np.mean(row)) for row in curve]
    fits = {law: fit_law(depths, mean, law) for law in N3_LAWS}
    exponent, r2 = power_law_exponent(depths, mean)
    return {
        "delta": mean,
        "delta_per_seed": curve,
        "fit_c": {law: c for law, (c, _) in fits.items()},
        "fit_rms_log": {law: rms for law, (_, rms) in fits.items()},
        "exponent": exponent,
        "exponent_r2": r2,
    }


def _measure_n3(setting: Mapping[str, Any], seed: int) -> dict:
    """delta(L) for the branch scale ``alpha`` (judged) and for ``fixed_alpha`` (the comparison)."""
    depths = setting["depths"]
    return {
        "depths": list(depths),
        "scaled": _curve_summary(depths, _delta_curve(setting, setting["alpha"], seed)),
        "fixed": _curve_summary(depths, _delta_curve(setting, setting["fixed_alpha"], seed)),
    }


def _decreases(curve: Mapping[str, Any]) -> bool:
    return curve["exponent"] < N3_DECAY_EXPONENT and curve["delta"][-1] < curve["delta"][0]


def _judge_n3(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    s, f = m["scaled"], m["fixed"]
    depths = m["depths"]
    span = (
        f"delta = max_k |ratio_k - 1| went from {s['delta'][0]:.3g} at L = {depths[0]} to {s['delta'][-1]:.3g} at "
        f"L = {depths[-1]} at initialisation (alpha = {setting['alpha']}; fitted delta ~ L^{s['exponent']:.2f}, "
        f"R^2 {s['exponent_r2']:.2f})"
    )
    if not _decreases(s):
        return refuted(f"{span}: delta does not decrease with depth")
    rms = s["fit_rms_log"]
    best = min(rms, key=rms.get)
    fits = ", ".join(f"{law}: {rms[law]:.3f}" for law in N3_LAWS)
    fixed = (
        f"with fixed alpha = {setting['fixed_alpha']} delta went from {f['delta'][0]:.3g} to {f['delta'][-1]:.3g} "
        f"(L^{f['exponent']:.2f})"
    )
    if rms[N3_THEORY_LAW] > N3_FIT_MARGIN * rms[best]:
        return qualified(f"{span}; but {best} fits clearly better than {N3_THEORY_LAW} (RMS log error {fits}); {fixed}")
    if not _decreases(f):
        return qualified(
            f"{span}, and {N3_THEORY_LAW} fits as well as the alternatives (RMS log error {fits}); but only "
            f"because the branches shrink with depth: {fixed}"
        )
    return confirmed(f"{span}; {N3_THEORY_LAW} fits as well as the alternatives (RMS log error {fits}); {fixed}")


def _plot_n3(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    L = np.asarray(m["depths"], dtype=float)
    for key, label in (("scaled", f"α = {setting['alpha']}"), ("fixed", f"α = {setting['fixed_alpha']} (fixed)")):
        curve = m[key]
        per_seed = np.asarray(curve["delta_per_seed"])
        (line,) = ax.loglog(L, curve["delta"], "o-", ms=5, label=label)
        ax.loglog(np.repeat(L, per_seed.shape[1]), per_seed.ravel(), ".", ms=3, alpha=0.5, color=line.get_color())
    grid = np.geomspace(L.min(), L.max(), 100)
    for law, style in zip(N3_LAWS, ("k-", "k--", "k:")):
        ax.loglog(grid, m["scaled"]["fit_c"][law] * N3_LAWS[law](grid), style, lw=1, label=f"fit {law}")
    ax.set_xlabel("depth L (residual blocks)")
    ax.set_ylabel("δ = max_k |‖g_k‖/‖g_{k+1}‖ − 1|")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="N3",
    statement=(
        "The gradient norm ratio across a block lies within 1 +- delta with delta = c log(2L)/L: deeper "
        "residual networks are more norm-preserving."
    ),
    source="002",
    expected=(
        "for zoo residual MLPs (ReLU, critical init, branch scale alpha = 1/sqrt(L)) at initialisation, "
        "delta = max_k |grad_ratio_k - 1| (ds.probe) decreases with depth L, and c log(2L)/L fits delta(L) "
        "at least as well as c/sqrt(L) and c/L"
    ),
    refuted_if=(
        "delta does not decrease with depth: the exponent of a power-law fit delta ~ L^b is above -0.1, or "
        "delta at the largest depth is not below delta at the smallest. Qualified if it decreases but another "
        "law's RMS log error is 1.25x smaller than that of c log(2L)/L, or if it decreases only when the "
        "branches shrink with depth (the fixed-alpha comparison does not decrease)"
    ),
    presets={
        "tiny": {
            "depths": [2, 4, 8, 16],
            "seeds": 2,
            "width": 16,
            "batch": 2,
            "alpha": N3_DEPTH_SCALED,
            "fixed_alpha": 1.0,
        },
        "quick": {
            "depths": [4, 8, 16, 32, 64, 128, 256],
            "seeds": 3,
            "width": 32,
            "batch": 4,
            "alpha": N3_DEPTH_SCALED,
            "fixed_alpha": 1.0,
        },
        "full": {
            "depths": [4, 8, 16, 32, 64, 128, 256, 512, 1024],
            "seeds": 5,
            "width": 64,
            "batch": 8,
            "alpha": N3_DEPTH_SCALED,
            "fixed_alpha": 1.0,
        },
    },
    measure=_measure_n3,
    judge=_judge_n3,
    plot=_plot_n3,
    counterexample={"alpha": 1.0},
    references=(
        NORM_PRESERVATION_PAPER,
        "P. L. Bartlett, S. N. Evans, P. M. Long, Representing smooth functions as compositions of near-identity "
        "functions with implications for deep network optimization, arXiv:1804.05012, 2018",
        "S. Hayou, E. Clerico, B. He, G. Deligiannidis, A. Doucet, J. Rousseau, Stable ResNet, AISTATS 2021",
    ),
)
