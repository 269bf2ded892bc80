"""Claim V4 (seed 003): in a deep linear network, dE/dW_k is a product of the other weight matrices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, _build, _child_seed
from depthscope.zoo import make_activation
from depthscope.zoo.toys import deep_linear_weight_grad

V4_RTOL = 1e-10  # float64 products of up to 100 matrices


def _activated_layers(model: nn.Module, activation: str) -> Chain:
    """The layers of a zoo ``deep_linear`` as a chain, each followed by ``activation`` (``linear``:
    slope 1, the deep linear network itself)."""
    return Chain(
        [(f"layers.{k}", nn.Sequential(layer, make_activation(activation))) for k, layer in enumerate(model.layers)]
    )


def _measure_v4(setting: Mapping[str, Any], seed: int) -> dict:
    """Gaussian deep linear networks W_L ... W_1 (W ~ N(0, 1/width)); loss E = sum_b <f(x_b), g_b> with
    x, g: (batch, width) standard normal. dE/dW_k by autograd against the closed form
    (W_L..W_{k+1})^T g x^T (W_{k-1}..W_1)^T (`deep_linear_weight_grad`), per layer k."""
    gen = torch.Generator().manual_seed(seed)
    width, batch = setting["width"], setting["batch"]
    worst, per_layer, grad_norms = [], [], []
    for depth in setting["depths"]:
        for _ in range(setting["trials"]):
            model = _build("deep_linear", _child_seed(gen), depth=depth, width=width)
            chain = _activated_layers(model, setting["activation"])
            x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
            g = torch.randn(batch, width, generator=gen, dtype=torch.float64)
            weights = [layer.weight for layer in model.layers]
            with torch.enable_grad():
                auto = torch.autograd.grad((chain(x) * g).sum(), weights)
            errs = [float((a - deep_linear_weight_grad(model, x, g, k)).norm() / a.norm()) for k, a in enumerate(auto)]
            worst.append(max(errs))
            per_layer, grad_norms = errs, [float(a.norm()) for a in auto]
    return {
        "depths": list(setting["depths"]),
        "max_rel_err": max(worst),
        "worst_per_network": worst,
        "rel_err_per_layer_deepest": per_layer,
        "grad_norm_per_layer_deepest": grad_norms,
    }


def _judge_v4(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    n = len(m["worst_per_network"])
    nets = f"{n} networks of depth {', '.join(map(str, m['depths']))} and width {setting['width']}"
    if m["max_rel_err"] > V4_RTOL:
        return refuted(
            f"with {setting['activation']} between the layers, autograd's dE/dW_k differs from the product of the "
            f"other matrices by up to {m['max_rel_err']:.3g} (relative; {nets})"
        )
    g = m["grad_norm_per_layer_deepest"]
    return confirmed(
        f"dE/dW_k = (W_L..W_(k+1))^T g x^T (W_(k-1)..W_1)^T matches autograd to {m['max_rel_err']:.2g} "
        f"(relative, every layer of {nets}); in the deepest, ||dE/dW_k||_F ranges {min(g):.3g}-{max(g):.3g}"
    )


def _plot_v4(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    k = np.arange(1, len(m["rel_err_per_layer_deepest"]) + 1)
    axes[0].semilogy(k, np.maximum(m["rel_err_per_layer_deepest"], 1e-17), "o-", ms=3)
    axes[0].axhline(V4_RTOL, ls="--", color="k", lw=1, label="refutation threshold")
    axes[0].set_xlabel("layer k")
    axes[0].set_ylabel("relative error, closed form vs autograd")
    axes[0].legend(fontsize=8)
    axes[1].semilogy(k, m["grad_norm_per_layer_deepest"], "o-", ms=3)
    axes[1].set_xlabel("layer k")
    axes[1].set_ylabel("||dE/dW_k||_F")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="V4",
    statement="Deep linear network: the gradient for W_k is a product of the other weight matrices.",
    source=SOURCE,
    expected="autograd's dE/dW_k equals (W_L...W_{k+1})^T g x^T (W_{k-1}...W_1)^T for every layer, to ~1e-14",
    refuted_if=f"for any layer of any network, the relative Frobenius error exceeds {V4_RTOL:g}",
    presets={
        "tiny": {"depths": [3, 8], "width": 6, "batch": 4, "trials": 2, "activation": "linear"},
        "quick": {"depths": [5, 20, 50], "width": 32, "batch": 16, "trials": 3, "activation": "linear"},
        "full": {"depths": [5, 20, 100], "width": 128, "batch": 64, "trials": 5, "activation": "linear"},
    },
    measure=_measure_v4,
    judge=_judge_v4,
    plot=_plot_v4,
    counterexample={"activation": "tanh"},
    references=(
        "Saxe, McClelland & Ganguli 2014, Exact solutions to the nonlinear dynamics of learning in deep "
        "linear neural networks",
    ),
)
