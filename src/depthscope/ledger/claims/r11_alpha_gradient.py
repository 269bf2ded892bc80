"""Claim R11 (seed 000): dL/dalpha = (grad_y L)^T F(x)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._residual_common import _BLOCK_KINDS, _blocks, _float64_model

# The formula and autograd sum the same products in a different order; relative to sum |terms|
# (so that cancellation cannot inflate it) they differ by ~1e-16 per term.
R11_REL_TOL = 1e-10


class _R11Problem:
    """A zoo resnet_mlp with learnable alpha (float64, blocks wrapped as ``block`` says), a batch and
    random regression targets; ``loss()`` runs it and keeps every block's input x_k and output y_k."""

    def __init__(self, setting: Mapping[str, Any], seed: int):
        n = setting["width"]
        self.model = _float64_model(
            "resnet_mlp", seed, depth=setting["depth"], width=n, alpha=setting["alpha"], learnable_alpha=True
        )
        self.blocks = [_BLOCK_KINDS[setting["block"]](b) for _, b in _blocks(self.model)]
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(setting["batch"], n, generator=g, dtype=torch.float64)
        self.target = torch.randn(setting["batch"], self.model.head.out_features, generator=g, dtype=torch.float64)
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []

    def loss(self) -> torch.Tensor:
        """MSE, 0.5 * mean_b ||head(x_L) - target_b||^2 (a scalar)."""
        h, self.inputs, self.outputs = self.model.stem(self.x), [], []
        for block in self.blocks:
            self.inputs.append(h)
            h = block(h)
            self.outputs.append(h)
        return 0.5 * ((self.model.head(h) - self.target) ** 2).sum(dim=1).mean()


def _measure_r11(setting: Mapping[str, Any], seed: int) -> dict:
    """For every block, autograd's dL/dalpha against sum_b <dL/dy_b, F(x_b)>, with y the block's
    output and F its branch (see `_R11Problem`)."""
    problem = _R11Problem(setting, seed)
    loss = problem.loss()
    blocks, inputs, outputs = problem.blocks, problem.inputs, problem.outputs
    alphas = [block.alpha for block in blocks]
    grads = torch.autograd.grad(loss, alphas + outputs)
    autograd, grad_y = grads[: len(blocks)], grads[len(blocks) :]
    rows = []
    with torch.no_grad():
        for k, (block, x_k, g_y, a) in enumerate(zip(blocks, inputs, grad_y, autograd)):
            terms = g_y * block.branch(x_k)
            formula = float(terms.sum())
            rows.append(
                {
                    "block": k,
                    "autograd": float(a),
                    "formula": formula,
                    "rel_error": abs(formula - float(a)) / max(float(terms.abs().sum()), 1e-300),
                }
            )
    return {"rows": rows, "loss": float(loss.detach())}


def _judge_r11(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    worst = max(m["rows"], key=lambda r: r["rel_error"])
    if worst["rel_error"] > R11_REL_TOL:
        return refuted(
            f"{setting['block']} block {worst['block']}: autograd dL/dalpha = {worst['autograd']:.6g} but "
            f"(grad_y L)^T F(x) = {worst['formula']:.6g} (relative error {worst['rel_error']:.3g})"
        )
    return confirmed(
        f"dL/dalpha = (grad_y L)^T F(x) at all {len(m['rows'])} blocks to {worst['rel_error']:.1g} relative error "
        f"(float64 autograd, learnable alpha, MSE loss)"
    )


def _plot_r11(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    a = np.asarray([r["autograd"] for r in m["rows"]])
    f = np.asarray([r["formula"] for r in m["rows"]])
    ax.scatter(a, f, s=14, label="blocks")
    lim = [min(a.min(), f.min()), max(a.max(), f.max())]
    ax.plot(lim, lim, "k--", lw=1, label="formula = autograd")
    ax.set_xlabel("dL/dα (autograd)")
    ax.set_ylabel("(∇_y L)ᵀ F(x)")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="R11",
    statement="dL/dalpha = (grad_y L)^T F(x).",
    source="000",
    expected=(
        "at every block of a resnet_mlp with learnable alpha, autograd's dL/dalpha equals sum_b <grad_y L, F(x)>"
    ),
    refuted_if="at any block the two differ by more than 1e-10 relative to sum |grad_y L * F(x)|",
    presets={
        "tiny": {"depth": 4, "width": 8, "batch": 4, "alpha": 0.5, "block": "residual"},
        "quick": {"depth": 16, "width": 32, "batch": 16, "alpha": 0.25, "block": "residual"},
        "full": {"depth": 64, "width": 128, "batch": 64, "alpha": 0.125, "block": "residual"},
    },
    measure=_measure_r11,
    judge=_judge_r11,
    plot=_plot_r11,
    counterexample={"block": "post_ln"},
)
