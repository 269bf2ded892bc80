"""Claim R6 (seed 000): eig(I + W) = 1 + lambda_i(W); small initial W clusters them near 1."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._residual_common import _matched_distance

# eig is backward stable: an eigenvalue moves by ~1e-16 * ||I + W|| times its condition number,
# which for Gaussian matrices of these sizes stays far below the 1e7 this tolerance allows.
R6_EIG_TOL = 1e-9


def _measure_r6(setting: Mapping[str, Any], seed: int) -> dict:
    """W with i.i.d. N(0, std^2) entries for each size n and std; eig(I + W) against 1 + eig(W)
    (float64, Hungarian-matched), and the cluster radius max_i |mu_i - 1|.

    ``cluster_radius`` makes "near 1" concrete for the judge: 0.1 (every |mu| within 10% of 1)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in setting["sizes"]:
        eye = torch.eye(n, dtype=torch.float64)
        for std in setting["entry_std"]:
            err, radius = 0.0, 0.0
            for _ in range(setting["trials"]):
                w = std * torch.randn(n, n, generator=g, dtype=torch.float64)
                mu = torch.linalg.eigvals(eye + w).numpy()
                err = max(err, _matched_distance(mu, 1 + torch.linalg.eigvals(w).numpy()))
                radius = max(radius, float(np.abs(mu - 1).max()))
            # Circular law: the eigenvalues of W fill the disc of radius std * sqrt(n).
            rows.append({"n": n, "std": std, "match_error": err, "radius": radius, "circular_law": std * math.sqrt(n)})
    return {"rows": rows}


def _judge_r6(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    rows, r = m["rows"], setting["cluster_radius"]
    err = max(row["match_error"] for row in rows)
    if err > R6_EIG_TOL:
        return refuted(f"eig(I + W) and 1 + eig(W) differ by {err:.3g} after matching (float64)")
    ok = [row for row in rows if row["radius"] <= r]
    bad = [row for row in rows if row["radius"] > r]
    ratio = [row["radius"] / row["circular_law"] for row in rows]
    if not ok:
        best = min(rows, key=lambda row: row["radius"])
        return refuted(
            f"eig(I + W) = 1 + eig(W) to {err:.1g}, but no tested init clusters them within {r} of 1: the tightest "
            f"is max|mu - 1| = {best['radius']:.3g} (entry std {best['std']}, n = {best['n']})"
        )
    head = f"eig(I + W) = 1 + eig(W) to {err:.1g} (matched, float64)"
    if not bad:
        return confirmed(
            f"{head}; every tested init has max|mu - 1| <= {r} (largest {max(x['radius'] for x in rows):.3g})"
        )
    return qualified(
        f"{head}; but the eigenvalues cluster within {r} of 1 only while std * sqrt(n) <= "
        f"{max(x['circular_law'] for x in ok):.3g} (fails from {min(x['circular_law'] for x in bad):.3g}): "
        f"max|mu - 1| = ({min(ratio):.2f} to {max(ratio):.2f}) x std * sqrt(n) (circular law), so 'small' must be "
        f"small against 1/sqrt(n), not entrywise (e.g. std {bad[-1]['std']} at n = {bad[-1]['n']} gives "
        f"{bad[-1]['radius']:.2f})"
    )


def _plot_r6(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for n in setting["sizes"]:
        rows = [row for row in m["rows"] if row["n"] == n]
        ax.loglog([row["circular_law"] for row in rows], [row["radius"] for row in rows], "o", label=f"n = {n}")
    pred = np.asarray([row["circular_law"] for row in m["rows"]])
    grid = np.geomspace(pred.min(), pred.max(), 20)
    ax.loglog(grid, grid, "k--", lw=1, label="circular law std·√n")
    ax.axhline(setting["cluster_radius"], color="r", ls=":", lw=1, label="cluster radius")
    ax.set_xlabel("std · √n")
    ax.set_ylabel("max |μ − 1|, μ ∈ eig(I + W)")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="R6",
    statement="Eigenvalues of I + W are 1 + lambda_i(W); small initial W clusters them near 1.",
    source="000",
    expected=(
        "eig(I + W) equals 1 + eig(W) to float64 rounding, and for W with small N(0, std^2) entries every "
        "eigenvalue of I + W lies within cluster_radius of 1"
    ),
    refuted_if=(
        "the matched eigenvalues differ by more than 1e-9, or no tested (n, std) keeps max|mu - 1| within "
        "cluster_radius; qualified if clustering holds only for some sizes"
    ),
    presets={
        "tiny": {"sizes": [8, 32], "entry_std": [0.003, 0.03], "trials": 2, "cluster_radius": 0.1},
        "quick": {"sizes": [16, 64, 256], "entry_std": [0.001, 0.01, 0.03], "trials": 2, "cluster_radius": 0.1},
        "full": {
            "sizes": [16, 64, 256, 1024],
            "entry_std": [0.001, 0.003, 0.01, 0.03],
            "trials": 2,
            "cluster_radius": 0.1,
        },
    },
    measure=_measure_r6,
    judge=_judge_r6,
    plot=_plot_r6,
    counterexample={"entry_std": [0.3]},
)
