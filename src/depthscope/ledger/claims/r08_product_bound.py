"""Claim R8 (seed 000): L blocks I + W_k with ||W_k||_2 <= eps amplify by at most (1 + eps)^L."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from depthscope import _linalg
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted

# Log-domain slack: L renormalised float64 products carry a relative error of ~L * 1e-16.
R8_LOG_ROUNDING = 1e-9
R8_KINDS = ("random", "aligned")


def _r8_factors(kind: str, n: int, eps: float, depth: int, g: torch.Generator):
    """The factors I + W_k, k = 1..depth, with ||W_k||_2 = eps (float64, (n, n)).

    random: W_k = eps G_k / ||G_k||_2 with Gaussian G_k, independent per block.
    aligned: W_k = eps (u u^T - v v^T) for one orthonormal pair u, v, the same in every block: the
    product is I + ((1 + eps)^L - 1) u u^T + ((1 - eps)^L - 1) v v^T, reaching both bounds.
    """
    eye = torch.eye(n, dtype=torch.float64)
    if kind == "aligned":
        q, _ = torch.linalg.qr(torch.randn(n, 2, generator=g, dtype=torch.float64))
        a = eye + eps * (torch.outer(q[:, 0], q[:, 0]) - torch.outer(q[:, 1], q[:, 1]))
        for _ in range(depth):
            yield a
        return
    for _ in range(depth):
        w = torch.randn(n, n, generator=g, dtype=torch.float64)
        yield eye + w * (eps / torch.linalg.matrix_norm(w, ord=2))


def _log_extreme_singular_values(factors, checkpoints) -> list[tuple[float, float]]:
    """(log sigma_max, log sigma_min) of A_L ... A_1 at each L in ``checkpoints``.

    Both products are renormalised every step so that long ones neither overflow nor underflow;
    sigma_min is 1 / sigma_max of the inverse product A_1^-1 ... A_L^-1, because a product of
    dynamic range e^100 has lost its smallest singular value to rounding long before.
    """
    out, p, q, log_p, log_q = [], None, None, 0.0, 0.0
    for k, a in enumerate(factors, 1):
        p = a if p is None else a @ p
        q = _linalg.inv(a) if q is None else q @ _linalg.inv(a)
        cp, cq = p.abs().max(), q.abs().max()
        p, q = p / cp, q / cq
        log_p, log_q = log_p + math.log(cp), log_q + math.log(cq)
        if k in checkpoints:
            out.append((log_p + math.log(torch.linalg.svdvals(p)[0]), -(log_q + math.log(torch.linalg.svdvals(q)[0]))))
    return out


def _measure_r8(setting: Mapping[str, Any], seed: int) -> dict:
    """Products of L factors I + W_k, ||W_k||_2 = eps, random and aligned; exact extreme singular
    values in log domain at every L in ``depths``."""
    g = torch.Generator().manual_seed(seed)
    depths = sorted(setting["depths"])
    rows = []
    for kind in R8_KINDS:
        for eps in setting["eps"]:
            for trial in range(setting["trials"] if kind == "random" else 1):
                factors = _r8_factors(kind, setting["width"], eps, depths[-1], g)
                for depth, (log_max, log_min) in zip(depths, _log_extreme_singular_values(factors, set(depths))):
                    rows.append(
                        {
                            "kind": kind,
                            "eps": eps,
                            "depth": depth,
                            "trial": trial,
                            "log_sigma_max": log_max,
                            "log_sigma_min": log_min,
                        }
                    )
    return {"rows": rows}


def _judge_r8(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    b = setting["bound_scale"]
    worst, where = 0.0, None
    for r in m["rows"]:
        excess = max(
            r["log_sigma_max"] - r["depth"] * math.log1p(b * r["eps"]),
            r["depth"] * math.log1p(-b * r["eps"]) - r["log_sigma_min"],
        )
        if excess > worst:
            worst, where = excess, r
    if worst > R8_LOG_ROUNDING:
        return refuted(
            f"a product of L = {where['depth']} blocks ({where['kind']} W, ||W_k||_2 = {where['eps']}) left "
            f"[(1 - {b}eps)^L, (1 + {b}eps)^L] by a factor e^{worst:.3g}"
        )

    def share(kind: str) -> list[float]:  # log sigma_max as a share of log (1 + eps)^L, at the deepest L
        deepest = max(setting["depths"])
        return [
            r["log_sigma_max"] / (r["depth"] * math.log1p(r["eps"]))
            for r in m["rows"]
            if r["kind"] == kind and r["depth"] == deepest
        ]

    top = max(setting["eps"]) * max(setting["depths"])
    return confirmed(
        f"all {len(m['rows'])} products kept sigma_max <= (1 + eps)^L and sigma_min >= (1 - eps)^L (L up to "
        f"{max(setting['depths'])}); aligned W_k = eps (uu^T - vv^T) attain both bounds (log share "
        f"{min(share('aligned')):.6f}), "
        f"independent random W_k reach only {min(share('random')):.0%}-{max(share('random')):.0%} of log (1 + eps)^L. "
        f"The bound is exp(L log(1 + eps)): near-linear 1 + L eps only while L eps << 1 (here L eps reaches {top:g})"
    )


def _plot_r8(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for i, eps in enumerate(setting["eps"]):
        color = f"C{i}"
        for kind, marker in (("aligned", "s"), ("random", "o")):
            rows = [r for r in m["rows"] if r["eps"] == eps and r["kind"] == kind]
            ax.semilogx(
                [r["depth"] for r in rows],
                [r["log_sigma_max"] / r["depth"] for r in rows],
                marker,
                color=color,
                mfc="none" if kind == "random" else color,
                label=f"ε = {eps}, {kind}",
            )
        ax.axhline(math.log1p(eps), color=color, ls="--", lw=1)
    ax.set_xlabel("blocks L")
    ax.set_ylabel("log σ_max(Π(I+W_k)) / L")
    ax.set_title("dashed: log(1 + ε), the bound per block", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return fig


EXPERIMENT = Experiment(
    id="R8",
    statement="L such blocks amplify by at most (1 + eps)^L.",
    source="000",
    expected=(
        "every product of L factors I + W_k with ||W_k||_2 = eps has sigma_max <= (1 + eps)^L and "
        "sigma_min >= (1 - eps)^L; aligned W_k reach the bounds, random ones stay well inside"
    ),
    refuted_if=(
        "any product's log sigma_max exceeds L log(1 + eps), or log sigma_min falls below L log(1 - eps), "
        "by more than 1e-9"
    ),
    presets={
        "tiny": {"width": 8, "depths": [1, 10, 50], "eps": [0.1, 0.5], "trials": 2, "bound_scale": 1.0},
        "quick": {
            "width": 32,
            "depths": [1, 10, 100, 1000],
            "eps": [0.01, 0.1, 0.5],
            "trials": 3,
            "bound_scale": 1.0,
        },
        "full": {
            "width": 64,
            "depths": [1, 10, 100, 1000, 5000],
            "eps": [0.01, 0.1, 0.5, 0.9],
            "trials": 3,
            "bound_scale": 1.0,
        },
    },
    measure=_measure_r8,
    judge=_judge_r8,
    plot=_plot_r8,
    counterexample={"bound_scale": 0.5},
)
