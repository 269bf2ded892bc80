"""Claim R12 (seed 000): a deep linear residual stack near zero gives every block the same gradient; update ~ L."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.func import jvp

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted

# "The same gradient" within 10%: max_k ||G_k - mean G|| / ||mean G|| at most this.
R12_SPREAD_TOL = 0.1
# "Scales with L": the first-order change of the end-to-end map within 10% of L ||mean G||.
R12_UPDATE_TOL = 0.1


def _end_to_end(weights: torch.Tensor) -> torch.Tensor:
    """prod_k (I + W_k), last block leftmost; weights: (L, n, n) -> (n, n)."""
    eye = torch.eye(weights.shape[-1], dtype=weights.dtype)
    m = eye
    for w in weights:
        m = (eye + w) @ m
    return m


def _measure_r12(setting: Mapping[str, Any], seed: int) -> dict:
    """Linear stack x_{k+1} = (I + W_k) x_k with W_k ~ N(0, scale^2 / n) entries (float64), MSE to
    random targets. Per (scale, L): the spread of the per-block gradients G_k, and the first-order
    change of the end-to-end map under one SGD step, d/dlr prod(I + W_k - lr G_k) at lr = 0 (a jvp)."""
    n, batch = setting["width"], setting["batch"]
    rows = []
    for scale in setting["scales"]:
        for depth in setting["depths"]:
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, n, generator=g, dtype=torch.float64)
            target = torch.randn(batch, n, generator=g, dtype=torch.float64)
            weights = (scale / math.sqrt(n)) * torch.randn(depth, n, n, generator=g, dtype=torch.float64)
            weights.requires_grad_(True)
            h = x
            for w in weights:
                h = h + h @ w.T
            loss = 0.5 * ((h - target) ** 2).sum(dim=1).mean()
            (grad,) = torch.autograd.grad(loss, weights)
            mean = grad.mean(dim=0)
            spread = float(((grad - mean).flatten(1).norm(dim=1) / mean.norm()).max())
            _, change = jvp(_end_to_end, (weights.detach(),), (-grad,))
            rows.append(
                {
                    "scale": scale,
                    "depth": depth,
                    "spread": spread,
                    "grad_norm": float(mean.norm()),
                    "update_norm": float(change.norm()),
                    "update_ratio": float(change.norm() / (depth * mean.norm())),
                }
            )
    return {"rows": rows}


def _r12_ok(r: Mapping[str, Any]) -> bool:
    return r["spread"] <= R12_SPREAD_TOL and abs(r["update_ratio"] - 1) <= R12_UPDATE_TOL


def _judge_r12(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    rows = m["rows"]
    smallest = min(setting["scales"])
    failed = [r for r in rows if not _r12_ok(r)]
    if any(r["scale"] == smallest for r in failed):
        r = max((r for r in failed if r["scale"] == smallest), key=lambda r: r["spread"])
        return refuted(
            f"at init scale {smallest}, L = {r['depth']}: the per-block gradients differ by up to {r['spread']:.3g} "
            f"of their mean and the update is {r['update_ratio']:.3g} x L ||mean G||"
        )
    base = [r for r in rows if r["scale"] == smallest]
    ratio = [r["update_ratio"] for r in base]
    head = (
        f"at init scale {smallest} the per-block gradients agree to {max(r['spread'] for r in base):.1g} and the "
        f"end-to-end update is ({min(ratio):.4f} to {max(ratio):.4f}) "
        f"x L lr ||G|| for L = {min(setting['depths'])}..{max(setting['depths'])}"
    )
    if not failed:
        return confirmed(f"{head}; every tested init scale stays within {R12_SPREAD_TOL:.0%}")
    passed = [r for r in rows if _r12_ok(r)]
    ok_reach = max(r["scale"] * math.sqrt(r["depth"]) for r in passed)
    bad_reach = min(r["scale"] * math.sqrt(r["depth"]) for r in failed)
    worst = max(failed, key=lambda r: r["spread"])
    return qualified(
        f"{head}; 'near zero' must be judged against depth: the gradients agree within {R12_SPREAD_TOL:.0%} only while "
        f"scale * sqrt(L) <= {ok_reach:.2g} (fails from {bad_reach:.2g}; at scale {worst['scale']}, "
        f"L = {worst['depth']} they differ by {worst['spread']:.3g} and the update is {worst['update_ratio']:.3g} "
        f"x L ||mean G||)"
    )


def _plot_r12(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for i, scale in enumerate(setting["scales"]):
        rows = [r for r in m["rows"] if r["scale"] == scale]
        depth = [r["depth"] for r in rows]
        left.loglog(depth, [max(r["spread"], 1e-17) for r in rows], "o-", color=f"C{i}", label=f"scale {scale}")
        right.loglog(
            depth, [r["update_norm"] / r["grad_norm"] for r in rows], "o-", color=f"C{i}", label=f"scale {scale}"
        )
    left.axhline(R12_SPREAD_TOL, color="k", ls="--", lw=1)
    left.set_xlabel("blocks L")
    left.set_ylabel("max_k ‖G_k − Ḡ‖ / ‖Ḡ‖")
    left.legend(fontsize=7)
    grid = np.asarray(setting["depths"], dtype=float)
    right.loglog(grid, grid, "k--", lw=1, label="L")
    right.set_xlabel("blocks L")
    right.set_ylabel("‖first-order ΔM‖ / (lr ‖Ḡ‖)")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="R12",
    statement=(
        "Deep linear residual stack initialised near zero: every block receives the same weight gradient; "
        "the total update scales with L."
    ),
    source="000",
    expected=(
        "near W = 0 the per-block gradients G_k agree (exactly at 0: G_k = g x^T), and one SGD step changes the "
        "end-to-end map by L lr ||G|| to first order"
    ),
    refuted_if=(
        "at the smallest tested init scale some depth has per-block gradients differing by more than 10% of "
        "their mean, or an update off L lr ||G|| by more than 10%; qualified if larger scales break it"
    ),
    presets={
        "tiny": {"width": 8, "batch": 4, "depths": [2, 8], "scales": [0.0, 0.01, 0.5]},
        "quick": {"width": 32, "batch": 16, "depths": [2, 8, 32, 128], "scales": [0.0, 0.001, 0.01, 0.1, 0.5]},
        "full": {"width": 64, "batch": 64, "depths": [2, 8, 32, 128, 512], "scales": [0.0, 0.001, 0.01, 0.1, 0.5]},
    },
    measure=_measure_r12,
    judge=_judge_r12,
    plot=_plot_r12,
    counterexample={"scales": [0.5]},
)
