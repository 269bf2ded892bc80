"""Claim V2 (seed 003): sigmoid' <= 0.25 bounds 20 layers' gradient factor by 0.25^20; tanh' <= 1."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, _build
from depthscope.zoo import make_activation

V2_BOUNDS = {"sigmoid": 0.25, "tanh": 1.0}  # the claimed sup of sigma'
V2_RTOL = 1e-12  # float64 slack on the bound
V2_ATTAINED_RTOL = 1e-9  # sigma'(z) within this of the bound counts as attaining it


class _ScaledLayer(nn.Module):
    """a -> c sigma(w a): a tower layer whose activation output is scaled by c; a: (B, 1)."""

    def __init__(self, layer: nn.Module, scale: float):
        super().__init__()
        self.layer = layer
        self.scale = float(scale)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.scale * self.layer(a)


def _activation_derivative_on_grid(
    act: str, scale: float, half_width: float, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """(z, d/dz [scale sigma(z)]) on ``points`` equispaced z in [-half_width, half_width], by autograd."""
    z = torch.linspace(-half_width, half_width, points, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        (d,) = torch.autograd.grad((scale * make_activation(act)(z)).sum(), z)
    return z.detach().numpy(), d.numpy()


def _tower_factor(act: str, scale: float, depth: int, x: float, w1: float) -> float:
    """|d f_L / d w_1| / |x| by autograd for the tower (upper weights 1) with scaled activations."""
    tower = _build("scalar_tower", 0, depth=depth, weights=[w1] + [1.0] * (depth - 1), activation=act)
    chain = Chain([(f"layers.{k}", _ScaledLayer(layer, scale)) for k, layer in enumerate(tower.layers)])
    xt = torch.tensor([[x]], dtype=torch.float64)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(chain(xt).sum(), tower.layers[0].w)
    return abs(float(grad)) / abs(x)


def _measure_v2(setting: Mapping[str, Any], seed: int) -> dict:
    """Per activation: sup of sigma' on a grid (and where it is reached), and the gradient factor
    |d f_L / d w_1| / |x| of ``trials`` depth-``depth`` towers with x, w_1 ~ N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    for act, bound in V2_BOUNDS.items():
        z, d = _activation_derivative_on_grid(
            act, setting["output_scale"], setting["grid_half_width"], setting["grid_points"]
        )
        attained = z[d >= bound * (1 - V2_ATTAINED_RTOL)]
        factors = []
        for _ in range(setting["trials"]):
            x, w1 = torch.randn(2, generator=gen, dtype=torch.float64).tolist()
            factors.append(_tower_factor(act, setting["output_scale"], setting["depth"], x, w1))
        log10 = np.log10(np.maximum(factors, np.finfo(float).tiny))
        out[act] = {
            "sup_derivative": float(d.max()),
            "argmax_z": float(z[int(np.argmax(d))]),
            "attained_at": attained.tolist(),
            "log10_factors": log10.tolist(),
            "log10_factor_max": float(log10.max()),
            "log10_factor_median": float(np.median(log10)),
            "log10_bound": setting["depth"] * math.log10(bound),
        }
    return out


def _judge_v2(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    L = setting["depth"]
    for act, bound in V2_BOUNDS.items():
        r = m[act]
        if r["sup_derivative"] > bound * (1 + V2_RTOL):
            return refuted(
                f"{act}: the derivative reaches {r['sup_derivative']:.4g} at z = {r['argmax_z']:.3g}, "
                f"above the claimed bound {bound:g}"
            )
        if r["log10_factor_max"] > r["log10_bound"] + math.log10(1 + V2_RTOL):
            return refuted(
                f"{act}: a depth-{L} tower scaled the gradient by 10^{r['log10_factor_max']:.2f}, "
                f"above the claimed {bound:g}^{L} = 10^{r['log10_bound']:.2f}"
            )
    s, t = m["sigmoid"], m["tanh"]
    near_zero = max(abs(z) for z in s["attained_at"] + t["attained_at"])
    return confirmed(
        f"max sigma' = {s['sup_derivative']:.6g} (sigmoid) and {t['sup_derivative']:.6g} (tanh), reached only "
        f"within |z| <= {near_zero:.1g} of 0; over {setting['trials']} random depth-{L} towers the sigmoid factor "
        f"is at most 10^{s['log10_factor_max']:.2f} <= 0.25^{L} = 10^{s['log10_bound']:.2f} "
        f"(median 10^{s['log10_factor_median']:.2f}), "
        f"the tanh factor at most 10^{t['log10_factor_max']:.2f} <= 1"
    )


def _plot_v2(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for act in V2_BOUNDS:
        r = m[act]
        axes[0].hist(r["log10_factors"], bins=20, alpha=0.6, label=f"{act} towers")
        axes[0].axvline(r["log10_bound"], ls="--", lw=1, color="k")
    axes[0].set_xlabel(f"log10 gradient factor, depth {setting['depth']}")
    axes[0].set_ylabel("towers")
    axes[0].legend(fontsize=8)
    for act, bound in V2_BOUNDS.items():
        z, d = _activation_derivative_on_grid(act, setting["output_scale"], setting["grid_half_width"], 401)
        axes[1].plot(z, d, label=f"{act}'")
        axes[1].axhline(bound, ls="--", lw=1, color="k")
    axes[1].set_xlabel("z")
    axes[1].set_ylabel("σ'(z)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="V2",
    statement="Sigmoid: sigma' <= 0.25, so 20 layers scale the gradient by at most 0.25^20; tanh: <= 1.",
    source=SOURCE,
    expected="sup sigma' = 0.25 (sigmoid) and 1 (tanh), reached only at z = 0; every random depth-20 tower "
    "scales d f / d w_1 by at most 0.25^20 ~ 9.1e-13 (sigmoid) and 1 (tanh)",
    refuted_if="the derivative exceeds 0.25 (sigmoid) or 1 (tanh) anywhere on a grid of [-10, 10] through 0, "
    "or a measured tower factor exceeds bound^depth (relative slack 1e-12)",
    presets={
        "tiny": {"depth": 20, "trials": 10, "grid_points": 2001, "grid_half_width": 10.0, "output_scale": 1.0},
        "quick": {"depth": 20, "trials": 200, "grid_points": 20001, "grid_half_width": 10.0, "output_scale": 1.0},
        "full": {"depth": 20, "trials": 2000, "grid_points": 200001, "grid_half_width": 10.0, "output_scale": 1.0},
    },
    measure=_measure_v2,
    judge=_judge_v2,
    plot=_plot_v2,
    counterexample={"output_scale": 4.0},
    references=("sigma'(z) = sigma(z)(1 - sigma(z)) <= 1/4 and tanh'(z) = 1 - tanh(z)^2 <= 1, equality at z = 0",),
)
