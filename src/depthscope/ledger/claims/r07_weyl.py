"""Claim R7 (seed 000): Weyl, ||W||_2 <= eps puts every singular value of I + W in [1 - eps, 1 + eps]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted

R7_ROUNDING = 1e-12  # float64 slack on the interval's ends


def _measure_r7(setting: Mapping[str, Any], seed: int) -> dict:
    """Random W of each size rescaled to ||W||_2 = eps; singular values of I + W by SVD (float64).

    ``bound_scale`` < 1 checks a tighter interval than the claim states (the counterexample).
    """
    g = torch.Generator().manual_seed(seed)
    lo, hi, spread, eps_list, worst = [], [], [], [], 0.0
    for n in setting["sizes"]:
        for eps in setting["eps"]:
            for _ in range(setting["trials"]):
                w = torch.randn(n, n, generator=g, dtype=torch.float64)
                w *= eps / torch.linalg.matrix_norm(w, ord=2)
                s = torch.linalg.svdvals(torch.eye(n, dtype=torch.float64) + w)
                bound = setting["bound_scale"] * eps
                excess = max(float(s.max()) - (1 + bound), (1 - bound) - float(s.min()), 0.0)
                worst = max(worst, excess)
                lo.append(float(s.min()))
                hi.append(float(s.max()))
                spread.append(float(s.max() - s.min()))
                eps_list.append(eps)
    return {"eps": eps_list, "sigma_min": lo, "sigma_max": hi, "spread": spread, "worst_excess": worst}


def _judge_r7(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    n = len(m["eps"])
    if m["worst_excess"] > R7_ROUNDING:
        return refuted(
            f"a singular value of I + W left [1 - {setting['bound_scale']}eps, 1 + {setting['bound_scale']}eps] "
            f"by {m['worst_excess']:.3g} ({n} matrices)"
        )
    tight = max(abs(h - 1 - e) for h, e in zip(m["sigma_max"], m["eps"]))
    return confirmed(
        f"all {n} random I + W with ||W||_2 = eps had singular values inside [1 - eps, 1 + eps]; "
        f"max over matrices of |sigma_max - (1 + eps)| = {tight:.2g}"
    )


def _plot_r7(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    eps = np.asarray(m["eps"])
    ax.scatter(eps, m["sigma_max"], s=12, label="σ_max(I+W)")
    ax.scatter(eps, m["sigma_min"], s=12, label="σ_min(I+W)")
    grid = np.linspace(0, eps.max(), 50)
    ax.plot(grid, 1 + grid, "k--", lw=1, label="1 ± ε (Weyl)")
    ax.plot(grid, 1 - grid, "k--", lw=1)
    ax.set_xlabel("ε = ||W||₂")
    ax.set_ylabel("singular value")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="R7",
    statement="Weyl: ||W||_2 <= eps puts every singular value of I + W in [1 - eps, 1 + eps].",
    source="000",
    expected="for random W rescaled to ||W||_2 = eps, every singular value of I + W lies in [1 - eps, 1 + eps]",
    refuted_if="any singular value (exact SVD, float64) lies outside [1 - eps, 1 + eps] by more than 1e-12",
    presets={
        "tiny": {"sizes": [4, 16], "eps": [0.1, 0.5], "trials": 2, "bound_scale": 1.0},
        "quick": {"sizes": [4, 32, 128], "eps": [0.01, 0.1, 0.3, 0.6, 0.9], "trials": 5, "bound_scale": 1.0},
        "full": {"sizes": [4, 64, 256, 512], "eps": [0.01, 0.1, 0.3, 0.6, 0.9], "trials": 20, "bound_scale": 1.0},
    },
    measure=_measure_r7,
    judge=_judge_r7,
    plot=_plot_r7,
    counterexample={"bound_scale": 0.5},
)
