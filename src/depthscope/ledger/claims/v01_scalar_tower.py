"""Claim V1 (seed 003): in a scalar tower, d f_L / d w_1 = x prod_k sigma'(z_k)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, _build, _relative_gap
from depthscope.zoo.toys import activation_derivative

V1_RTOL = 1e-10  # float64: 20 multiplications leave ~1e-15 relative error


class _SkipScalarLayer(nn.Module):
    """a -> w a + sigma(w a): a tower layer with an identity path around its activation; a: (B, 1)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.layer.w * a + self.layer(a)


def _tower_chain(tower: nn.Module, skip: bool) -> Chain:
    """The layers of a zoo ``scalar_tower`` as a chain, each with a skip path when ``skip``."""
    layers = [_SkipScalarLayer(layer) if skip else layer for layer in tower.layers]
    return Chain([(f"layers.{k}", layer) for k, layer in enumerate(layers)])


def _tower_preactivations(tower: nn.Module, chain: Chain, x: torch.Tensor) -> torch.Tensor:
    """z_k = w_k a_{k-1} along the chain's own forward pass, ``(1, L)`` for ``x: (1, 1)``."""
    states = chain.states(x)
    return torch.cat([layer.w * a for layer, a in zip(tower.layers, states[:-1])], dim=-1)


def _measure_v1(setting: Mapping[str, Any], seed: int) -> dict:
    """Towers sigma(... sigma(w_1 x)) (upper weights 1) of every depth and activation; x, w_1 ~ N(0, 1).

    For each: d f_L / d w_1 by autograd through the chain, and the claim's x prod_k sigma'(z_k) with
    z_k read from the same forward pass (float64). ``skip`` adds an identity path to every layer.
    """
    gen = torch.Generator().manual_seed(seed)
    rows: dict[str, list] = {"activation": [], "depth": [], "autograd": [], "formula": [], "rel_err": []}
    for act in setting["activations"]:
        for depth in setting["depths"]:
            for _ in range(setting["trials"]):
                x, w1 = torch.randn(2, generator=gen, dtype=torch.float64).tolist()
                tower = _build(
                    "scalar_tower",
                    0,
                    depth=depth,
                    weights=[w1] + [1.0] * (depth - 1),
                    activation=act,
                    slope=setting["slope"],
                )
                chain = _tower_chain(tower, setting["skip"])
                xt = torch.tensor([[x]], dtype=torch.float64)
                with torch.enable_grad():
                    (auto,) = torch.autograd.grad(chain(xt).sum(), tower.layers[0].w)
                z = _tower_preactivations(tower, chain, xt).detach()
                formula = x * float(activation_derivative(act, z, setting["slope"]).prod())
                rows["activation"].append(act)
                rows["depth"].append(depth)
                rows["autograd"].append(float(auto))
                rows["formula"].append(formula)
                rows["rel_err"].append(_relative_gap(float(auto), formula))
    worst = int(np.argmax(rows["rel_err"]))
    return {**rows, "max_rel_err": rows["rel_err"][worst], "worst_index": worst}


def _judge_v1(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    n, w = len(m["rel_err"]), m["worst_index"]
    where = f"{m['activation'][w]} at depth {m['depth'][w]}"
    if m["max_rel_err"] > V1_RTOL:
        return refuted(
            f"autograd and x prod sigma'(z_k) disagree: relative gap {m['max_rel_err']:.3g} > {V1_RTOL:g} "
            f"({where}: autograd {m['autograd'][w]:.6g}, formula {m['formula'][w]:.6g}; {n} towers)"
        )
    nonzero = [abs(a) for a in m["autograd"] if a != 0]
    span = f"; |df/dw_1| spans {min(nonzero):.2g} to {max(nonzero):.2g}" if nonzero else ""
    return confirmed(
        f"autograd equals x prod sigma'(z_k) in all {n} towers (activations {', '.join(setting['activations'])}; "
        f"depths {min(setting['depths'])}-{max(setting['depths'])}) to relative error {m['max_rel_err']:.2g}{span}"
    )


def _plot_v1(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    auto, form = np.abs(m["autograd"]), np.abs(m["formula"])
    acts = np.asarray(m["activation"])
    for act in setting["activations"]:
        keep = (acts == act) & (auto > 0) & (form > 0)
        ax.scatter(form[keep], auto[keep], s=14, label=act)
    positive = np.concatenate([auto[auto > 0], form[form > 0]])
    if positive.size:
        grid = np.array([positive.min(), positive.max()])
        ax.plot(grid, grid, "k--", lw=1, label="equality")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|x ∏ σ'(z_k)|  (claim)")
    ax.set_ylabel("|∂f_L/∂w_1|  (autograd)")
    ax.set_title("scalar towers" + (" with skip paths" if setting["skip"] else ""))
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="V1",
    statement="Scalar tower: d f_L / d w_1 = x prod_k sigma'(z_k).",
    source=SOURCE,
    expected="for towers sigma(... sigma(w_1 x)) of depth 1-20 with sigmoid, tanh, ReLU and linear "
    "activations, autograd's d f_L / d w_1 equals x prod_k sigma'(z_k) to float64 rounding",
    refuted_if=f"in any tower, autograd and x prod_k sigma'(z_k) differ by more than {V1_RTOL:g} (relative)",
    presets={
        "tiny": {
            "depths": [1, 3, 10],
            "activations": ["sigmoid", "tanh", "relu", "linear"],
            "slope": 1.5,
            "trials": 2,
            "skip": False,
        },
        "quick": {
            "depths": [1, 2, 5, 10, 20],
            "activations": ["sigmoid", "tanh", "relu", "linear"],
            "slope": 1.5,
            "trials": 10,
            "skip": False,
        },
        "full": {
            "depths": [1, 2, 5, 10, 20, 50],
            "activations": ["sigmoid", "tanh", "relu", "linear"],
            "slope": 1.5,
            "trials": 50,
            "skip": False,
        },
    },
    measure=_measure_v1,
    judge=_judge_v1,
    plot=_plot_v1,
    counterexample={"skip": True},
)
