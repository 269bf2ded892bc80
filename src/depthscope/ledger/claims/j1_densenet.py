"""Claim J1 (seed 001): per-layer ||d out_k / d in_0||_F is more stable across depth for ResNet than DenseNet."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope._errors import NonFiniteError
from depthscope.chain import Chain
from depthscope.ledger._data import digits
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger._train import train_classifier
from depthscope.ledger.claims._engineering_common import DIGITS_FEATURES
from depthscope.ledger.claims._seeds import run_seeds
from depthscope.zoo import create_model
from depthscope.zoo.densenet import DenseNet

J1_CONDITIONS = ("init", "trained")
J1_RATIO_HOLDS = 1.0  # ResNet spread / DenseNet spread below this: the ResNet is the more stable one
J1_LR = 1e-3  # Adam step for both architectures


def _layer_jacobian_norms(model: nn.Module, x0: torch.Tensor) -> torch.Tensor:
    """||d out_k / d x_0||_F for every layer k = 1..L, per example, by exact forward-mode Jacobians.

    ``x0``: (B, d_0), the state after the stem. ``out_k`` is what layer k adds: the ``growth`` new
    features of a DenseNet layer (``DenseNet.layer_output``), the whole state x_k of a residual net
    (its block output). Returns (B, L).
    """
    steps = Chain.from_module(model).steps[1:-1]  # the blocks, without stem and head
    dense = isinstance(model, DenseNet)

    def outputs(v: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (d_0,) -> L tensors (n_k,)
        s = v.unsqueeze(0)
        outs = []
        for k, step in enumerate(steps, start=1):
            s = step(s)
            outs.append((model.layer_output(s, k) if dense else s)[0])
        return tuple(outs)

    jacobians = torch.func.vmap(torch.func.jacfwd(outputs))(x0)
    return torch.stack([torch.linalg.matrix_norm(j) for j in jacobians], dim=1).detach()


def _log_profile(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """log of the batch RMS of ||d out_k / d x_0||_F for k = 1..L; x: (B, 64) digits -> (L,).

    The RMS (the Frobenius norm of the Jacobians of all examples stacked, over sqrt(B)) stays finite
    when a ReLU layer is silent for some examples; it is -inf only for a layer silent for all.
    """
    with torch.no_grad():
        x0 = model.stem(x)
    norms = _layer_jacobian_norms(model, x0).double()
    return (0.5 * norms.pow(2).mean(0).log()).numpy()


def _spread(profile: np.ndarray) -> float:
    """Spread of a log-norm profile across layers: its standard deviation (L,) -> float; inf when
    some layer passes no signal at all (log norm -inf)."""
    return float(np.std(profile)) if np.all(np.isfinite(profile)) else math.inf


def _spread_ratio(residual: float, dense: float) -> float:
    """ResNet spread / DenseNet spread, with two silent networks (inf / inf) counted as equal."""
    if math.isinf(residual) and math.isinf(dense):
        return 1.0
    return residual / dense if dense > 0 else math.inf


def _j1_models(setting: Mapping[str, Any], run_seed: int) -> dict[str, nn.Module]:
    """The DenseNet and one ResNet per alpha, each built from ``run_seed``; keys "dense", "alpha=a"."""
    depth, width = setting["depth"], setting["width"]
    torch.manual_seed(run_seed)
    models = {
        "dense": create_model(
            "densenet_mlp", depth=depth, width=width, growth=setting["growth"], in_dim=DIGITS_FEATURES
        )
    }
    for a in setting["alphas"]:
        torch.manual_seed(run_seed)
        models[f"alpha={a:g}"] = create_model("resnet_mlp", depth=depth, width=width, alpha=a, in_dim=DIGITS_FEATURES)
    return models


def _measure_j1(setting: Mapping[str, Any], seed: int) -> dict:
    """Per-layer log Jacobian norms of a DenseNet and of ResNets with each alpha, at initialisation
    and (when ``train_steps`` > 0) after training on digits; several seeds.

    ``profiles[cond][model]``: one (L,) list per seed (None where training diverged); ``spreads``
    the same with the std across layers; ``ratio[cond][alpha]``: per seed, ResNet spread / DenseNet
    spread (None where either network diverged).
    """
    data = digits()
    x = data.x_test[: setting["n_examples"]]
    conditions = [c for c in J1_CONDITIONS if c == "init" or setting["train_steps"] > 0]
    profiles: dict[str, dict[str, list]] = {c: {} for c in conditions}
    accuracy: dict[str, list] = {}
    for run_seed in run_seeds(seed, setting["seeds"]):
        for name, model in _j1_models(setting, run_seed).items():
            profiles["init"].setdefault(name, []).append(_log_profile(model, x).tolist())
            if "trained" in conditions:
                try:
                    run = train_classifier(
                        model, data, steps=setting["train_steps"], lr=J1_LR, optimizer="adam", seed=run_seed
                    )
                except NonFiniteError:
                    profiles["trained"].setdefault(name, []).append(None)
                    accuracy.setdefault(name, []).append(None)
                    continue
                profiles["trained"].setdefault(name, []).append(_log_profile(model, x).tolist())
                accuracy.setdefault(name, []).append(run.test_accuracy)
    spreads = {
        c: {n: [None if p is None else _spread(np.asarray(p)) for p in ps] for n, ps in by.items()}
        for c, by in profiles.items()
    }
    ratio = {
        c: {
            n: [None if r is None or d is None else _spread_ratio(r, d) for r, d in zip(s, spreads[c]["dense"])]
            for n, s in by.items()
            if n != "dense"
        }
        for c, by in spreads.items()
    }
    return {
        "conditions": conditions,
        "profiles": profiles,
        "spreads": spreads,
        "ratio": ratio,
        "test_accuracy": accuracy,
    }


def _judge_j1(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    holds, fails = [], []
    for cond in m["conditions"]:
        dense_all = [d for d in m["spreads"][cond]["dense"] if d is not None]
        for name, ratios in m["ratio"][cond].items():
            kept = [r for r in ratios if r is not None]
            if not kept or not dense_all:
                fails.append(f"{name} {cond}: training diverged in every seed")
                continue
            med = float(np.median(kept))
            dense = float(np.median(dense_all))
            diverged = f", {len(ratios) - len(kept)} seed(s) diverged" if len(kept) < len(ratios) else ""
            text = f"{name} {cond}: spread {med * dense:.3g} vs DenseNet {dense:.3g} (ratio {med:.2f}{diverged})"
            (holds if med < J1_RATIO_HOLDS else fails).append(text)
    where = f"depth {setting['depth']}, {setting['seeds']} seeds, spread = std over layers of log ||d out_k/d x_0||_F"
    if not fails:
        return confirmed(
            f"the ResNet's per-layer Jacobian norms varied less than the DenseNet's in every case ({where}): "
            + "; ".join(holds)
        )
    if not holds:
        return refuted(
            f"the ResNet's per-layer Jacobian norms varied at least as much as the DenseNet's in every case ({where}): "
            + "; ".join(fails)
        )
    return qualified(
        f"the ResNet was the more stable only in some cases ({where}). Holds: "
        + "; ".join(holds)
        + ". Fails: "
        + "; ".join(fails)
    )


def _plot_j1(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    conds = m["conditions"]
    fig, axes = plt.subplots(1, len(conds), figsize=(5.5 * len(conds), 3.6), squeeze=False)
    for ax, cond in zip(axes[0], conds):
        for name, ps in m["profiles"][cond].items():
            kept = [p for p in ps if p is not None]
            if not kept:
                continue
            mean = np.mean(np.asarray(kept), axis=0)
            ax.plot(
                np.arange(1, len(mean) + 1),
                mean,
                "k-" if name == "dense" else "-",
                lw=2 if name == "dense" else 1.2,
                label="DenseNet" if name == "dense" else f"ResNet {name}",
            )
        ax.set_xlabel("layer k")
        ax.set_ylabel("log ||∂out_k/∂x_0||_F (mean over seeds)")
        ax.set_title(cond)
        ax.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="J1",
    statement="Per-layer ||d out_k / d in_0||_F is more stable across depth for ResNet than DenseNet.",
    source="001",
    expected=(
        "the standard deviation across layers of log ||d out_k / d x_0||_F (exact forward-mode Jacobians, RMS over "
        "examples; out_k = the residual state x_k, or the new features of DenseNet layer k) is smaller for the ResNet, "
        "for each branch scale alpha, at initialisation and after training on digits (median over seeds)"
    ),
    refuted_if=(
        "for every alpha and condition measured, the median over seeds of ResNet spread / DenseNet spread is >= 1; "
        "qualified when it is < 1 for some (alpha, condition) pairs and not for others"
    ),
    presets={
        "tiny": {
            "depth": 4,
            "width": 16,
            "growth": 8,
            "alphas": [0.1, 1.0],
            "seeds": 2,
            "n_examples": 8,
            "train_steps": 40,
        },
        "quick": {
            "depth": 16,
            "width": 32,
            "growth": 16,
            "alphas": [0.1, 0.25, 1.0],
            "seeds": 3,
            "n_examples": 16,
            "train_steps": 200,
        },
        "full": {
            "depth": 40,
            "width": 64,
            "growth": 12,
            "alphas": [0.05, 0.1, 0.158, 0.5, 1.0],
            "seeds": 3,
            "n_examples": 32,
            "train_steps": 2000,
        },
    },
    measure=_measure_j1,
    judge=_judge_j1,
    plot=_plot_j1,
    counterexample={"alphas": [2.0]},
    references=(
        "Huang et al. 2017, Densely connected convolutional networks (DenseNet)",
        "He et al. 2016, Deep residual learning for image recognition",
        "Hayou et al. 2021, Stable ResNet (alpha = 1/sqrt(L))",
    ),
)
