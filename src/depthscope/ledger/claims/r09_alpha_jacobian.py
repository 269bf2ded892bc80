"""Claim R9 (seed 000): y = x + alpha F(x) has Jacobian I + alpha J_F, eigenvalues 1 + alpha lambda(J_F)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._residual_common import (
    _BLOCK_KINDS,
    _blocks,
    _float64_model,
    _matched_distance,
    _per_example_jacobian,
)
from depthscope.probing import probe

# J and I + alpha J_F come from the same float64 products, summed differently: ~1e-16 apart.
R9_JACOBIAN_TOL = 1e-12
# Matched eigenvalues, relative to 1 + |alpha| rho(J_F); see R6_EIG_TOL in r06_eigenvalues.
R9_EIG_TOL = 1e-9


def _measure_r9(setting: Mapping[str, Any], seed: int) -> dict:
    """For each alpha: the first block of a zoo resnet_mlp (float64, same weights for every alpha),
    exact Jacobians J of the block and J_F of its branch at random inputs; J against I + alpha J_F
    and eig(J) against 1 + alpha eig(J_F). Depth consequence: ``ds.probe`` of the whole block stack
    at each alpha (end-to-end log gain)."""
    n = setting["width"]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(setting["inputs"], n, generator=g, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    rows = []
    for alpha in setting["alphas"]:
        model = _float64_model("resnet_mlp", seed, depth=setting["depth"], width=n, alpha=alpha)
        blocks = [(name, _BLOCK_KINDS[setting["block"]](b)) for name, b in _blocks(model)]
        block = blocks[0][1]
        a = float(block.alpha)  # the float32-built alpha is not exactly the decimal one
        jac = _per_example_jacobian(block, x).detach()
        jac_f = _per_example_jacobian(block.branch, x).detach()
        predicted = eye + a * jac_f
        jac_err = ((jac - predicted).flatten(1).norm(dim=1) / predicted.flatten(1).norm(dim=1)).max()
        eig_err, spread = 0.0, 0.0
        for j, jf in zip(jac, jac_f):
            lam = torch.linalg.eigvals(jf).numpy()
            mu = torch.linalg.eigvals(j).numpy()
            eig_err = max(eig_err, _matched_distance(mu, 1 + a * lam) / (1 + abs(a) * np.abs(lam).max()))
            spread = max(spread, float(np.abs(mu - 1).max()))
        with torch.no_grad():
            x0 = model.stem(x)
        report = probe(Chain(blocks), x0, lyapunov=0, sigma_min=False)
        rows.append(
            {
                "alpha": alpha,
                "jacobian_error": float(jac_err),
                "eigenvalue_error": eig_err,
                "max_eig_distance_from_1": spread,
                "log_gain": report.log_gain,
            }
        )
    return {"rows": rows}


def _judge_r9(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    rows, kind = m["rows"], setting["block"]
    jac = max(rows, key=lambda r: r["jacobian_error"])
    if jac["jacobian_error"] > R9_JACOBIAN_TOL:
        return refuted(
            f"{kind} block at alpha = {jac['alpha']}: ||J - (I + alpha J_F)||_F / ||I + alpha J_F||_F = "
            f"{jac['jacobian_error']:.3g}"
        )
    eig = max(rows, key=lambda r: r["eigenvalue_error"])
    if eig["eigenvalue_error"] > R9_EIG_TOL:
        return refuted(
            f"{kind} block at alpha = {eig['alpha']}: eig(J) and 1 + alpha eig(J_F) differ by "
            f"{eig['eigenvalue_error']:.3g} (relative)"
        )
    lo, hi = rows[0], rows[-1]
    return confirmed(
        f"J = I + alpha J_F to {jac['jacobian_error']:.1g} and eig(J) = 1 + alpha eig(J_F) to "
        f"{eig['eigenvalue_error']:.1g} "
        f"(exact Jacobian, float64, alpha from {lo['alpha']} to {hi['alpha']}); the eigenvalues move out to "
        f"{hi['max_eig_distance_from_1']:.3g} from 1, and a {setting['depth']}-block stack's log gain goes from "
        f"{lo['log_gain']:.3g} to {hi['log_gain']:.3g}"
    )


def _plot_r9(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    alpha = [r["alpha"] for r in m["rows"]]
    left.semilogy(alpha, [max(r["jacobian_error"], 1e-17) for r in m["rows"]], "o-", label="‖J − (I + αJ_F)‖ rel.")
    left.semilogy(alpha, [max(r["eigenvalue_error"], 1e-17) for r in m["rows"]], "s-", label="eig mismatch rel.")
    left.axhline(R9_EIG_TOL, color="C1", ls="--", lw=1, label="eig refutation threshold")
    left.axhline(R9_JACOBIAN_TOL, color="C0", ls="--", lw=1, label="J refutation threshold")
    left.set_xlabel("α")
    left.set_ylabel("error (exact zeros drawn at 1e-17)")
    left.legend(fontsize=7, loc="center right")
    right.plot(alpha, [r["log_gain"] for r in m["rows"]], "o-", label=f"{setting['depth']}-block stack")
    right.set_xlabel("α")
    right.set_ylabel("end-to-end log gain (ds.probe)")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="R9",
    statement="y = x + alpha F(x) has Jacobian I + alpha J_F with eigenvalues 1 + alpha lambda(J_F).",
    source="000",
    expected=(
        "for a resnet_mlp block at every alpha, the exact Jacobian equals I + alpha J_F to float64 rounding and "
        "its eigenvalues are 1 + alpha times those of J_F"
    ),
    refuted_if=(
        "the relative Frobenius gap between J and I + alpha J_F exceeds 1e-12, or the matched eigenvalues "
        "differ by more than 1e-9 relative to 1 + |alpha| rho(J_F), at any alpha"
    ),
    presets={
        "tiny": {"width": 8, "inputs": 2, "depth": 4, "alphas": [0.0, 0.5, 2.0], "block": "residual"},
        "quick": {
            "width": 32,
            "inputs": 4,
            "depth": 32,
            "alphas": [0.0, 0.1, 0.25, 0.5, 1.0, 2.0],
            "block": "residual",
        },
        "full": {
            "width": 128,
            "inputs": 8,
            "depth": 64,
            "alphas": [0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0],
            "block": "residual",
        },
    },
    measure=_measure_r9,
    judge=_judge_r9,
    plot=_plot_r9,
    counterexample={"block": "post_ln"},
)
