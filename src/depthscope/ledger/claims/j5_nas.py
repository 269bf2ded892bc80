"""Claim J5 (seed 001): NAS, with skips present with probability s the expected gradient norm is (sigma^2 + s)^L."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted

J5_Z_MAX = 4.0  # |Monte Carlo mean - formula| beyond this many standard errors refutes
J5_MASKS = ("independent", "tied")
J5_CHUNK = 2000  # Monte Carlo networks drawn per batch


def j5_expected_sq_norm(sigma2: float, s: float, depth: int) -> float:
    """E ||g_0||^2 / ||g_L||^2 = (sigma^2 + s)^L for x_{k+1} = (W_k + b_k I) x_k.

    W_k: (n, n) with i.i.d. N(0, sigma^2 / n) entries, b_k ~ Bernoulli(s), all independent across
    layers and of each other. Backward, g_k = A_k^T g_{k+1} with A_k = W_k + b_k I, and g_{k+1}
    depends on layers above k only, so E[||A_k^T u||^2 | u] = u^T E[A_k A_k^T] u with
    E[A A^T] = E[W W^T] + E[b](E[W] + E[W]^T) + E[b^2] I = sigma^2 I + 0 + s I (each row of W has n
    entries of variance sigma^2 / n; b^2 = b). Iterating over the L layers gives (sigma^2 + s)^L
    exactly, at every width n. It equals 1 at every depth for s = 1 - sigma^2.
    """
    return (sigma2 + s) ** depth


def j5_second_moment(sigma2: float, s: float, depth: int, width: int) -> float:
    """E ||g_0||^4 / ||g_L||^4 under the same model, for the Monte Carlo standard error.

    Given u (unit), W^T u ~ N(0, sigma^2 / n I_n) by rotation invariance, so f = ||W^T u + b u||^2
    has, given b, mean sigma^2 + b and variance 2 sigma^4 / n + 4 b sigma^2 / n; the factors of the L
    layers are i.i.d., so E ||g_0||^4 = (E f^2)^L with
    E f^2 = 2 sigma^4 / n + 4 s sigma^2 / n + sigma^4 + 2 s sigma^2 + s.
    """
    n = width
    ef2 = 2 * sigma2**2 / n + 4 * s * sigma2 / n + sigma2**2 + 2 * s * sigma2 + s
    return ef2**depth


def j5_tied_expected_sq_norm(sigma2: float, s: float, depth: int) -> float:
    """E ||g_0||^2 when one Bernoulli(s) mask is drawn per network and shared by all layers:
    s (sigma^2 + 1)^L + (1 - s) sigma^(2L) (all skips present, or none)."""
    return s * (sigma2 + 1) ** depth + (1 - s) * sigma2**depth


def _j5_squared_norms(setting: Mapping[str, Any], s: float, depth: int, g: torch.Generator) -> torch.Tensor:
    """||g_0||^2 of ``trials`` random networks (float64), g_L a fixed unit vector: (trials,).

    ``mask`` "independent": b_k drawn per layer; "tied": one b per network for all layers.
    """
    n, sigma = setting["width"], math.sqrt(setting["sigma2"])
    out = []
    for start in range(0, setting["trials"], J5_CHUNK):
        count = min(J5_CHUNK, setting["trials"] - start)
        u = torch.zeros(count, n, dtype=torch.float64)
        u[:, 0] = 1.0
        tied = (torch.rand(count, 1, generator=g, dtype=torch.float64) < s).double()
        for _ in range(depth):
            W = torch.randn(count, n, n, generator=g, dtype=torch.float64) * (sigma / math.sqrt(n))
            b = (
                tied
                if setting["mask"] == "tied"
                else (torch.rand(count, 1, generator=g, dtype=torch.float64) < s).double()
            )
            u = torch.einsum("tij,ti->tj", W, u) + b * u  # A^T u with A = W + b I
        out.append(u.pow(2).sum(1))
    return torch.cat(out)


def _measure_j5(setting: Mapping[str, Any], seed: int) -> dict:
    """Monte Carlo E ||g_0||^2 over masks and weights against (sigma^2 + s)^L for each (L, s)."""
    if setting["mask"] not in J5_MASKS:
        raise ValueError(f"J5 mask must be one of {J5_MASKS}, got {setting['mask']!r}")
    g = torch.Generator().manual_seed(seed)
    rows = []
    for depth in setting["depths"]:
        for s in setting["s_values"]:
            sq = _j5_squared_norms(setting, s, depth, g)
            mean = float(sq.mean())
            formula = j5_expected_sq_norm(setting["sigma2"], s, depth)
            se_sample = float(sq.std()) / math.sqrt(len(sq))
            se_formula = math.sqrt(
                max(j5_second_moment(setting["sigma2"], s, depth, setting["width"]) - formula**2, 0.0) / len(sq)
            )
            se = max(se_sample, se_formula)
            rows.append(
                {
                    "depth": depth,
                    "s": s,
                    "mc_mean": mean,
                    "formula": formula,
                    "se": se,
                    "se_sample": se_sample,
                    "se_formula": se_formula,
                    "z": (mean - formula) / se if se > 0 else 0.0,
                    "rel_error": abs(mean - formula) / formula,
                    "mc_geometric_mean": float(sq.log().mean().exp()),
                    "tied_formula": j5_tied_expected_sq_norm(setting["sigma2"], s, depth),
                }
            )
    return {"rows": rows, "s_balanced": 1.0 - setting["sigma2"]}


def _judge_j5(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    rows = m["rows"]
    worst = max(rows, key=lambda r: abs(r["z"]))
    where = f"{setting['mask']} masks, n = {setting['width']}, sigma^2 = {setting['sigma2']:g}, {setting['trials']} networks per point"
    if abs(worst["z"]) > J5_Z_MAX:
        return refuted(
            f"Monte Carlo E||g_0||^2 missed (sigma^2 + s)^L at L = {worst['depth']}, s = {worst['s']:g}: "
            f"{worst['mc_mean']:.4g} vs {worst['formula']:.4g} ({worst['z']:+.1f} standard errors; {where}); "
            f"the formula for one mask shared by all layers, s (sigma^2 + 1)^L + (1 - s) sigma^(2L), gives {worst['tied_formula']:.4g}"
        )
    typical = max(rows, key=lambda r: r["formula"] / r["mc_geometric_mean"])
    return confirmed(
        f"Monte Carlo E||g_0||^2 matched (sigma^2 + s)^L at all {len(rows)} (L, s) points within {J5_Z_MAX:g} standard "
        f"errors (worst {worst['z']:+.2f} at L = {worst['depth']}, s = {worst['s']:g}; max relative error "
        f"{max(r['rel_error'] for r in rows):.2%}; {where}); s = 1 - sigma^2 = {m['s_balanced']:g} keeps it at 1 for every L. "
        f"The expectation is carried by rare networks: the geometric mean of ||g_0||^2 is up to "
        f"{typical['formula'] / typical['mc_geometric_mean']:.2g}x smaller (L = {typical['depth']}, s = {typical['s']:g})"
    )


def _plot_j5(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    grid = np.linspace(min(setting["s_values"]), max(setting["s_values"]), 50)
    for depth in setting["depths"]:
        rows = [r for r in m["rows"] if r["depth"] == depth]
        s = np.array([r["s"] for r in rows])
        (line,) = ax.plot(
            grid, [j5_expected_sq_norm(setting["sigma2"], v, depth) for v in grid], lw=1, label=f"(σ² + s)^{depth}"
        )
        ax.errorbar(
            s,
            [r["mc_mean"] for r in rows],
            yerr=[2 * r["se"] for r in rows],
            fmt="o",
            ms=4,
            color=line.get_color(),
            label=f"Monte Carlo, L = {depth} (±2 SE)",
        )
    ax.set_yscale("log")
    ax.set_xlabel("skip probability s")
    ax.set_ylabel("E ||g_0||² / ||g_L||²")
    ax.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="J5",
    statement="NAS: with skip connections present with probability s, the expected gradient norm is a predictable function of s.",
    source="001",
    expected=(
        "for x_{k+1} = (W_k + b_k I) x_k, W_k ~ N(0, sigma^2/n), b_k ~ Bernoulli(s) independent per layer, "
        "E ||g_0||^2 / ||g_L||^2 = (sigma^2 + s)^L exactly; Monte Carlo over masks and weights agrees"
    ),
    refuted_if=(
        f"at some (L, s) the Monte Carlo mean differs from (sigma^2 + s)^L by more than {J5_Z_MAX:g} standard errors "
        "(the larger of the sample SE and the SE the model predicts)"
    ),
    presets={
        "tiny": {
            "width": 8,
            "depths": [4],
            "sigma2": 0.5,
            "s_values": [0.0, 0.5, 1.0],
            "trials": 2000,
            "mask": "independent",
        },
        "quick": {
            "width": 16,
            "depths": [4, 8],
            "sigma2": 0.5,
            "s_values": [0.0, 0.25, 0.5, 0.75, 1.0],
            "trials": 10000,
            "mask": "independent",
        },
        "full": {
            "width": 32,
            "depths": [4, 8, 12],
            "sigma2": 0.5,
            "s_values": [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0],
            "trials": 40000,
            "mask": "independent",
        },
    },
    measure=_measure_j5,
    judge=_judge_j5,
    plot=_plot_j5,
    counterexample={"mask": "tied"},
    references=(
        "Veit et al. 2016, Residual networks behave like ensembles of relatively shallow networks",
        "Huang et al. 2016, Deep networks with stochastic depth",
    ),
)
