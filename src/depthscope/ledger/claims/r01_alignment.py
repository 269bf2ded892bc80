"""Claim R1 (seed 000): y = x + F(x); after training, F(x) aligns with the error t - x (positive cosine)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._training_common import _data, _row_cosine
from depthscope.zoo.mlp import ResidualBlock

R1_ALIGNED_MIN = 0.1  # mean held-out cosine that counts as clearly positive (chance: ~0 +- 0.01)
R1_ACTIVATION = "relu"
R1_SIGMA_W = math.sqrt(2.0)  # critical scale of the branch's first layer for ReLU (He et al. 2015)
R1_HISTOGRAM_BINS = 30


def _denoising_pairs(
    x_clean: torch.Tensor, setting: Mapping[str, Any], g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of the regression, both (n, d) in the image space.

    Input: x = clean image + N(0, noise^2) per pixel. Target ``"clean"``: t = the clean image, so
    the error t - x is minus the noise, which a denoiser can predict from x. Target
    ``"independent"``: t = x + fresh N(0, noise^2) noise, an error no function of x can predict.
    """
    x = x_clean + setting["noise"] * torch.randn(x_clean.shape, generator=g)
    if setting["target"] == "clean":
        return x, x_clean.clone()
    if setting["target"] == "independent":
        return x, x + setting["noise"] * torch.randn(x.shape, generator=g)
    raise ValueError(f"R1 target must be 'clean' or 'independent', got {setting['target']!r}")


def _residual_stack(width: int, depth: int) -> nn.ModuleList:
    """``depth`` zoo residual blocks x -> x + F(x), F(x) = alpha W2 relu(W1 x + b1), on (n, width).

    alpha = 1/sqrt(depth), the zoo's resnet_mlp default: a single block is x + W2 relu(W1 x + b1),
    and a stack's initial gain stays bounded, so every depth starts near the same place.
    """
    alpha = 1.0 / math.sqrt(depth)
    return nn.ModuleList(
        ResidualBlock(
            width,
            activation=R1_ACTIVATION,
            slope=1.0,
            init="gaussian",
            sigma_w=R1_SIGMA_W,
            sigma_b=0.0,
            alpha=alpha,
        )
        for _ in range(depth)
    )


def _stack_forward(
    blocks: nn.ModuleList, x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Run the stack on x (n, d): output x_L (n, d), the block inputs x_k and the branch outputs
    alpha F_k(x_k), each (n, d)."""
    inputs, updates = [], []
    h = x
    for block in blocks:
        f = block.alpha * block.branch(h)
        inputs.append(h)
        updates.append(f)
        h = h + f
    return h, inputs, updates


def _histogram_edges() -> np.ndarray:
    return np.linspace(-1.0, 1.0, R1_HISTOGRAM_BINS + 1)


@torch.no_grad()
def _alignment(blocks: nn.ModuleList, x: torch.Tensor, t: torch.Tensor) -> dict:
    """Cosines between what the residual adds and the error still left, per example, then averaged.

    x, t: (n, d). ``end_to_end``: cos(x_L - x_0, t - x_0), the stack as one residual F;
    ``per_block[k]``: cos(F_k(x_k), t - x_k), block k against the error left at its input;
    ``histogram``: counts of the per-example end-to-end cosines in R1_HISTOGRAM_BINS equal bins
    over [-1, 1]. ``mse`` is the mean squared error ||x_L - t||^2 per example, ``mse_identity``
    that of the identity map.
    """
    out, inputs, updates = _stack_forward(blocks, x)
    per_example = _row_cosine(out - x, t - x)
    counts, _ = np.histogram(per_example.numpy(), bins=_histogram_edges())
    return {
        "end_to_end": float(per_example.mean()),
        "histogram": counts.tolist(),
        "per_block": [float(_row_cosine(f, t - h).mean()) for f, h in zip(updates, inputs)],
        "mse": float(((out - t) ** 2).sum(1).mean()),
        "mse_identity": float(((x - t) ** 2).sum(1).mean()),
    }


def _fit_stack(
    blocks: nn.ModuleList, x: torch.Tensor, t: torch.Tensor, setting: Mapping[str, Any], g: torch.Generator
) -> list[float]:
    """Adam on the squared error ||x_L - t||^2 with mini-batches of x, t (n, d); the loss per step."""
    opt = torch.optim.Adam(blocks.parameters(), lr=setting["lr"])
    losses = []
    for _ in range(setting["steps"]):
        idx = torch.randint(len(x), (min(setting["batch"], len(x)),), generator=g)
        out, _, _ = _stack_forward(blocks, x[idx])
        loss = ((out - t[idx]) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _measure_r1(setting: Mapping[str, Any], seed: int) -> dict:
    """For each stack depth: residual blocks trained to map noisy digits x to targets t.

    Alignment is measured on held-out examples before and after training.
    """
    data = _data(setting, seed)
    g = torch.Generator().manual_seed(seed)
    x_train, t_train = _denoising_pairs(data.x_train, setting, g)
    x_test, t_test = _denoising_pairs(data.x_test, setting, g)
    runs = []
    for depth in setting["depths"]:
        torch.manual_seed(seed)
        blocks = _residual_stack(data.n_features, depth)
        before = _alignment(blocks, x_test, t_test)
        losses = _fit_stack(blocks, x_train, t_train, setting, g)
        after = _alignment(blocks, x_test, t_test)
        last = losses[-1] if losses else None
        runs.append({"depth": depth, "before": before, "after": after, "last_batch_loss": last})
    return {"runs": runs, "n_test": len(x_test)}


def _judge_r1(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    runs = m["runs"]
    summary = "; ".join(
        f"depth {r['depth']}: cos(F(x), t - x) {r['before']['end_to_end']:+.3f} before, "
        f"{r['after']['end_to_end']:+.3f} after training"
        for r in runs
    )
    unaligned = [r for r in runs if r["after"]["end_to_end"] <= R1_ALIGNED_MIN]
    if unaligned:
        worst = min(unaligned, key=lambda r: r["after"]["end_to_end"])
        return refuted(
            f"after {setting['steps']} steps the trained residual of depth {worst['depth']} has mean held-out cosine "
            f"{worst['after']['end_to_end']:+.3f} with the error t - x (needs > {R1_ALIGNED_MIN}) over "
            f"{m['n_test']} examples ({summary})"
        )
    untrained = [r for r in runs if r["after"]["mse"] >= r["after"]["mse_identity"]]
    if untrained:
        listed = ", ".join(
            f"depth {r['depth']}: {r['after']['mse']:.3g} vs {r['after']['mse_identity']:.3g}" for r in untrained
        )
        return qualified(
            f"the residual aligns with the error ({summary}), but training did not make every stack better than "
            f"the identity map (held-out squared error {listed}): alignment without a useful correction"
        )
    weak = [
        (r["depth"], k, c)
        for r in runs
        if r["depth"] > 1
        for k, c in enumerate(r["after"]["per_block"])
        if c <= R1_ALIGNED_MIN
    ]
    if weak:
        listed = ", ".join(f"block {k + 1} of {d}: {c:+.3f}" for d, k, c in weak)
        return qualified(
            f"the residual as a whole aligns with the error ({summary}), but inside a stack not every block "
            f"aligns with the error left at its own input ({listed}; threshold {R1_ALIGNED_MIN}): the alignment "
            f"holds for the summed residual, not for each block"
        )
    return confirmed(
        f"{summary}; every block of every stack aligns with the error left at its input "
        f"(min per-block cosine {min(min(r['after']['per_block']) for r in runs):+.3f} > {R1_ALIGNED_MIN})"
    )


def _plot_r1(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (ax_hist, ax_block) = plt.subplots(1, 2, figsize=(10, 3.6))
    first = m["runs"][0]
    edges = _histogram_edges()
    ax_hist.stairs(first["before"]["histogram"], edges, fill=True, alpha=0.6, label="before training")
    ax_hist.stairs(first["after"]["histogram"], edges, fill=True, alpha=0.6, label="after training")
    ax_hist.axvline(R1_ALIGNED_MIN, color="k", ls="--", lw=1, label="threshold")
    ax_hist.set_xlabel(f"cos(F(x), t − x), held-out examples (depth {first['depth']})")
    ax_hist.set_ylabel("examples")
    ax_hist.legend(fontsize=8)
    for r in m["runs"]:
        blocks = np.arange(1, r["depth"] + 1)
        ax_block.plot(blocks, r["after"]["per_block"], "o-", label=f"depth {r['depth']}, after")
        ax_block.plot(blocks, r["before"]["per_block"], "x:", color="grey")
    ax_block.axhline(R1_ALIGNED_MIN, color="k", ls="--", lw=1)
    ax_block.set_xticks(np.arange(1, max(r["depth"] for r in m["runs"]) + 1))
    ax_block.set_xlabel("block k")
    ax_block.set_ylabel("mean cos(F_k(x_k), t − x_k)")
    ax_block.legend(fontsize=8, title="grey: before training", title_fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="R1",
    statement="y = x + F(x); after training, F(x) aligns with the error t - x (positive cosine).",
    source="000",
    expected=(
        "residual blocks y = x + F(x) trained to map noisy digits x to clean digits t have, on held-out "
        "examples, a clearly positive mean cosine between F(x) and t - x, against ~0 before training"
    ),
    refuted_if=(
        f"after training, the mean held-out cosine between the learned residual x_L - x_0 and t - x_0 is "
        f"<= {R1_ALIGNED_MIN} for some stack depth (a single block is depth 1); qualified if the residual "
        f"aligns as a whole but a trained stack does not beat the identity map on held-out data, or some block "
        f"of a deeper stack has cos(F_k(x_k), t - x_k) <= {R1_ALIGNED_MIN}"
    ),
    presets={
        "tiny": {
            "dataset": "digits",
            "n_train": 600,
            "n_test": 200,
            "noise": 0.3,
            "target": "clean",
            "depths": [1, 2],
            "steps": 150,
            "lr": 3e-3,
            "batch": 128,
        },
        "quick": {
            "dataset": "digits",
            "n_train": None,
            "n_test": None,
            "noise": 0.3,
            "target": "clean",
            "depths": [1, 4],
            "steps": 600,
            "lr": 3e-3,
            "batch": 128,
        },
        "full": {
            "dataset": "mnist",
            "n_train": None,
            "n_test": None,
            "noise": 0.3,
            "target": "clean",
            "depths": [1, 4, 8],
            "steps": 1500,
            "lr": 1e-3,
            "batch": 128,
        },
    },
    measure=_measure_r1,
    judge=_judge_r1,
    plot=_plot_r1,
    counterexample={"target": "independent"},
    references=(
        "He et al. 2016, 'Deep residual learning for image recognition' (CVPR): residual functions learn "
        "corrections to the identity",
    ),
)
