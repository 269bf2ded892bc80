"""Claim R10 (seed 000): large alpha makes gradients of consecutive layers anti-aligned (they fight)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope._errors import NonFiniteError
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger._train import train_classifier
from depthscope.ledger.claims._training_common import COSINE_EPS, _data, _row_cosine
from depthscope.zoo import create_model

R10_ANTI_ALIGNED = -0.1  # mean cosine at or below this: anti-aligned on average
R10_DECORRELATED = 0.25  # mean cosine below this: the consecutive gradients have lost most alignment
R10_FIGHTING_FRACTION = 0.05  # share of (example, block pair) cosines below zero that counts as "some fight"
R10_STATES = ("init", "trained")


def _block_input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Per-example gradients of the summed cross-entropy w.r.t. every block's input.

    ``model`` is a zoo MLP (stem, blocks, head); x: (B, in_dim), y: (B,). Returns L + 1 tensors
    (B, width): g_k = dL/dx_k for the inputs x_0 .. x_{L-1} of the L blocks and the head's input x_L.
    Each example's loss depends on its own row only, so row i of g_k is example i's gradient.
    """
    states = [model.stem(x)]
    for block in model.blocks:
        states.append(block(states[-1]))
    loss = nn.functional.cross_entropy(model.head(states[-1]), y, reduction="sum")
    return list(torch.autograd.grad(loss, states))


def _consecutive_cosines(grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For g_0 .. g_L (each (B, width)): cos(g_k, g_{k+1}), the ratio ||g_k - g_{k+1}|| / ||g_{k+1}||
    and which entries are defined (both gradients nonzero). All three (L, B).

    g_k = (I + alpha J_F)^T g_{k+1}, so the ratio is ||alpha J_F^T g|| / ||g||. An example whose
    softmax has saturated has an exactly zero gradient and no direction; it is left out.
    """
    cos, ratio, valid = [], [], []
    for k in range(len(grads) - 1):
        lower, upper = grads[k].norm(dim=1), grads[k + 1].norm(dim=1)
        ok = (lower > 0) & (upper > 0)
        cos.append(_row_cosine(grads[k], grads[k + 1]))
        ratio.append(torch.where(ok, (grads[k] - grads[k + 1]).norm(dim=1) / upper.clamp_min(COSINE_EPS), 0.0))
        valid.append(ok)
    return torch.stack(cos), torch.stack(ratio), torch.stack(valid)


def _gradient_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Summary of the consecutive-block gradient cosines on a batch.

    ``orthogonal_prediction`` is the cosine 1 / sqrt(1 + r^2) that g_k and g_{k+1} would have if
    the branch term alpha J_F^T g were orthogonal to g (decorrelation without fighting), averaged
    like the measured one; a measured cosine below it means the branch term points against g.
    """
    grads = _block_input_gradients(model, x, y)
    if not all(torch.isfinite(g).all() for g in grads):
        raise NonFiniteError("a block-input gradient overflowed; lower alpha or depth", step=0, step_name="R10")
    cos, ratio, valid = _consecutive_cosines(grads)
    if not valid.any():
        raise NonFiniteError(
            "every example's gradient is exactly zero; no direction to compare", step=0, step_name="R10"
        )
    weight = valid.double()
    per_pair = (cos * weight).sum(1) / weight.sum(1).clamp_min(1.0)
    return {
        "mean_cosine": float(cos[valid].mean()),
        "negative_fraction": float((cos[valid] < 0).double().mean()),
        "orthogonal_prediction": float((1.0 / torch.sqrt(1.0 + ratio[valid] ** 2)).mean()),
        "defined_fraction": float(weight.mean()),
        "per_pair": per_pair.tolist(),
    }


def _measure_r10(setting: Mapping[str, Any], seed: int) -> dict:
    """resnet_mlp(alpha) at each alpha and seed: gradient cosines at init and after ``steps`` of Adam.

    Adam's steps do not scale with the gradient, so the exploding large-alpha nets can still take
    steps (the forward gain grows like (1 + alpha^2)^(depth/2): depth and alpha must keep it and its
    square inside float32). Returns per state (init, trained) lists aligned with ``alphas`` (means
    over seeds).
    """
    data = _data(setting, seed)
    x_eval, y_eval = data.x_test[: setting["n_eval"]], data.y_test[: setting["n_eval"]]
    out: dict[str, Any] = {"alphas": list(setting["alphas"])}
    per_state: dict[str, list[list[dict]]] = {s: [] for s in R10_STATES}
    for alpha in setting["alphas"]:
        rows: dict[str, list[dict]] = {s: [] for s in R10_STATES}
        for k in range(setting["seeds"]):
            torch.manual_seed(seed + k)
            model = create_model(
                "resnet_mlp",
                depth=setting["depth"],
                width=setting["width"],
                alpha=alpha,
                in_dim=data.n_features,
                out_dim=data.n_classes,
            )
            rows["init"].append(_gradient_alignment(model, x_eval, y_eval))
            train_classifier(
                model,
                data,
                steps=setting["steps"],
                lr=setting["lr"],
                batch=setting["batch"],
                seed=seed + k,
                optimizer="adam",
            )
            rows["trained"].append(_gradient_alignment(model, x_eval, y_eval))
        for state in R10_STATES:
            per_state[state].append(rows[state])
    for state, by_alpha in per_state.items():
        out[state] = {
            key: [float(np.mean([r[key] for r in rows])) for rows in by_alpha]
            for key in ("mean_cosine", "negative_fraction", "orthogonal_prediction", "defined_fraction")
        }
        out[state]["per_pair_largest_alpha"] = np.mean([r["per_pair"] for r in by_alpha[-1]], axis=0).tolist()
    return out


def _judge_r10(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    alphas = m["alphas"]
    state = min(R10_STATES, key=lambda s: m[s]["mean_cosine"][-1])
    rec = m[state]
    cos_hi, neg_hi, orth_hi = rec["mean_cosine"][-1], rec["negative_fraction"][-1], rec["orthogonal_prediction"][-1]
    trend = ", ".join(f"alpha {a:g}: {c:+.3f}" for a, c in zip(alphas, rec["mean_cosine"]))
    where = f"({state}, mean cos(dL/dx_k, dL/dx_k+1) over examples and block pairs: {trend})"
    if cos_hi <= R10_ANTI_ALIGNED:
        return confirmed(
            f"at alpha = {alphas[-1]:g} consecutive blocks' gradients are anti-aligned on average: mean cosine "
            f"{cos_hi:+.3f} <= {R10_ANTI_ALIGNED}, {neg_hi:.0%} of pairs negative {where}"
        )
    if cos_hi < R10_DECORRELATED and neg_hi >= R10_FIGHTING_FRACTION:
        return qualified(
            f"large alpha decorrelates consecutive gradients (mean cosine {cos_hi:+.3f} at alpha = {alphas[-1]:g}, "
            f"near the {orth_hi:.3f} expected if the branch term alpha J_F^T g were merely orthogonal to g) and "
            f"{neg_hi:.0%} of example/block pairs point against each other, but they are not anti-aligned on "
            f"average (needs <= {R10_ANTI_ALIGNED}): the fight is a minority of cases {where}"
        )
    return refuted(
        f"at alpha = {alphas[-1]:g} consecutive gradients stay aligned: mean cosine {cos_hi:+.3f} "
        f"(>= {R10_DECORRELATED} or only {neg_hi:.1%} of pairs negative, < {R10_FIGHTING_FRACTION:.0%}) {where}"
    )


def _plot_r10(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (ax_cos, ax_pair) = plt.subplots(1, 2, figsize=(10, 3.6))
    alphas = m["alphas"]
    for state, marker in zip(R10_STATES, ("o", "s")):
        ax_cos.plot(alphas, m[state]["mean_cosine"], marker + "-", label=f"measured, {state}")
        ax_cos.plot(alphas, m[state]["negative_fraction"], marker + ":", label=f"fraction < 0, {state}")
    ax_cos.plot(alphas, m["init"]["orthogonal_prediction"], "k--", lw=1, label="orthogonal branch term (init)")
    ax_cos.axhline(0.0, color="grey", lw=0.8)
    ax_cos.set_xscale("log")
    ax_cos.set_xlabel("alpha")
    ax_cos.set_ylabel("cos(dL/dx_k, dL/dx_k+1)")
    ax_cos.legend(fontsize=7)
    for state, marker in zip(R10_STATES, ("o", "s")):
        pairs = m[state]["per_pair_largest_alpha"]
        ax_pair.plot(np.arange(len(pairs)), pairs, marker + "-", label=state)
    ax_pair.axhline(0.0, color="grey", lw=0.8)
    ax_pair.set_xlabel("block pair (k, k+1)")
    ax_pair.set_ylabel(f"mean cosine at alpha = {alphas[-1]:g}")
    ax_pair.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="R10",
    statement="Large alpha makes gradients of consecutive layers anti-aligned (they fight).",
    source="000",
    expected=(
        "in resnet_mlp nets x -> x + alpha W2 relu(W1 x + b), the per-example gradients dL/dx_k and "
        "dL/dx_{k+1} at consecutive blocks' inputs have a negative mean cosine at large alpha (at init or "
        "after Adam steps), and a cosine near 1 at small alpha"
    ),
    refuted_if=(
        f"at the largest alpha, in both states (init, trained), the mean cosine over examples, block pairs and "
        f"seeds is >= {R10_DECORRELATED} or fewer than {R10_FIGHTING_FRACTION:.0%} of the cosines are negative; "
        f"confirmed only if the mean is <= {R10_ANTI_ALIGNED} in some state; in between: qualified"
    ),
    presets={
        "tiny": {
            "dataset": "digits",
            "n_train": 400,
            "n_test": 100,
            "depth": 6,
            "width": 32,
            "alphas": [0.1, 1.0, 8.0],
            "seeds": 1,
            "steps": 20,
            "lr": 1e-3,
            "batch": 64,
            "n_eval": 64,
        },
        "quick": {
            "dataset": "digits",
            "n_train": None,
            "n_test": None,
            "depth": 16,
            "width": 64,
            "alphas": [0.1, 0.3, 1.0, 2.0, 4.0, 8.0],
            "seeds": 3,
            "steps": 100,
            "lr": 1e-3,
            "batch": 128,
            "n_eval": 256,
        },
        "full": {
            "dataset": "mnist",
            "n_train": None,
            "n_test": None,
            "depth": 16,
            "width": 128,
            "alphas": [0.1, 0.3, 1.0, 2.0, 4.0, 8.0],
            "seeds": 5,
            "steps": 500,
            "lr": 1e-3,
            "batch": 128,
            "n_eval": 1000,
        },
    },
    measure=_measure_r10,
    judge=_judge_r10,
    plot=_plot_r10,
    counterexample={"alphas": [0.01, 0.03]},
    references=(
        "Bachlechner et al. 2020, 'ReZero is all you need': learnable residual weights started at 0",
        "Hayou et al. 2021, 'Stable ResNet': scaling residual branches by 1/sqrt(depth)",
    ),
)
