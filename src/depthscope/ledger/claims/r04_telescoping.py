"""Claim R4 (seed 000): x_L = x_0 + sum_i F_i(x_i); with F_i -> 0 every block is the identity."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope._errors import DepthscopeError
from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._residual_common import _blocks, _float64_model
from depthscope.probing import probe
from depthscope.zoo import default_sigma_w

R4_ROUNDING = 1e-12  # float64: a sum of `depth` unit-scale terms carries ~depth * 1e-16 of rounding
# The identity gap must vanish with the branch scale s; a fitted exponent below this means it does not.
R4_MIN_EXPONENT = 0.5

# Per model: how the branches are scaled by s (s -> 0 is F_i -> 0) and what the i-th branch F_i is.
# resnet_mlp: x_{i+1} = x_i + alpha F_i(x_i); alpha = s, and alpha = 0 is ReZero's initialisation.
# plain_mlp (the counterexample): x_{i+1} = F_i(x_i) has no skip, its "branch" is the whole layer,
# scaled through its weights (sigma_w = s times the critical ReLU scale).
_R4_MODELS: dict[str, tuple[Callable[[float], dict], Callable[[nn.Module, torch.Tensor], torch.Tensor]]] = {
    "resnet_mlp": (lambda s: {"alpha": s}, lambda block, x: block.alpha * block.branch(x)),
    "plain_mlp": (lambda s: {"sigma_w": s * default_sigma_w("relu")}, lambda block, x: block(x)),
}


def _measure_r4(setting: Mapping[str, Any], seed: int) -> dict:
    """Telescoping: the states x_i of the model's block chain against x_0 + sum_{i<k} F_i(x_i), with
    each F_i recomputed from the block's branch (float64, default init). Identity limit: the block
    chain probed exactly (``ds.probe``, full SVD) at each branch scale s; max_k ||J_k - I||_2."""
    if min(setting["scales"]) != 0:
        raise DepthscopeError("R4: scales must include 0, the limit F_i = 0 itself")
    scaled, branch = _R4_MODELS[setting["model"]]
    size = {"depth": setting["depth"], "width": setting["width"]}
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(setting["batch"], setting["width"], generator=g, dtype=torch.float64)

    model = _float64_model(setting["model"], seed, **size)
    blocks = _blocks(model)
    with torch.no_grad():
        states = Chain(blocks).states(model.stem(x))
        # The branch outputs are summed among themselves first, as the formula reads, so the two
        # sides round differently and agree only if the blocks really are x + F(x).
        branches = torch.stack([branch(block, x_i) for (_, block), x_i in zip(blocks, states[:-1])])
        telescoped = states[0] + branches.cumsum(dim=0)  # (depth, B, width): x_0 + sum_{i<k} F_i(x_i)
        errors = [float((x_k - t_k).norm() / x_k.norm()) for x_k, t_k in zip(states[1:], telescoped)]

    gaps = []
    for s in setting["scales"]:
        m = _float64_model(setting["model"], seed, **size, **scaled(s))
        with torch.no_grad():
            x0 = m.stem(x)
        report = probe(Chain(_blocks(m)), x0, lyapunov=0, exact=True)
        gaps.append(max(report.column("identity_gap")))
    pos = [(s, gap) for s, gap in zip(setting["scales"], gaps) if s > 0 and gap > 0]
    exponent = (
        float(np.polyfit(np.log([s for s, _ in pos]), np.log([gap for _, gap in pos]), 1)[0]) if len(pos) > 1 else None
    )
    return {
        "telescoping_error": max(errors),
        "telescoping_error_per_block": errors,
        "scales": list(setting["scales"]),
        "identity_gap": gaps,
        "gap_exponent": exponent,
    }


def _judge_r4(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    name, depth = setting["model"], setting["depth"]
    if m["telescoping_error"] > R4_ROUNDING:
        return refuted(
            f"{name}: x_L differs from x_0 + sum_i F_i(x_i) by {m['telescoping_error']:.3g} (relative, "
            f"depth {depth}); the states do not telescope"
        )
    gap0 = m["identity_gap"][m["scales"].index(0)]
    if gap0 > R4_ROUNDING:
        return refuted(
            f"{name} with F_i = 0 (s = 0): max_k ||J_k - I||_2 = {gap0:.3g}; the blocks are not the identity"
        )
    exponent = m["gap_exponent"]
    if exponent is not None and exponent < R4_MIN_EXPONENT:
        return refuted(
            f"{name}: max_k ||J_k - I||_2 does not vanish with the branch scale (fitted exponent {exponent:.2f})"
        )
    trend = (
        ""
        if exponent is None
        else f", and falls as s^{exponent:.2f} (it is {m['identity_gap'][-1]:.3g} at s = {m['scales'][-1]})"
    )
    return confirmed(
        f"{name}, depth {depth}: x_L = x_0 + sum_i F_i(x_i) to {m['telescoping_error']:.1g} (relative); "
        f"at F_i = 0 every block has ||J_k - I||_2 = {gap0:.1g} (exact SVD){trend}"
    )


def _plot_r4(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    s = np.asarray(m["scales"], dtype=float)
    gap = np.asarray(m["identity_gap"], dtype=float)
    keep = s > 0
    left.loglog(s[keep], np.maximum(gap[keep], 1e-17), "o-", label=setting["model"])
    left.axhline(max(gap[~keep].max(), 1e-17), color="k", ls=":", lw=1, label=f"s = 0: {gap[~keep].max():.2g}")
    left.set_xlabel("branch scale s")
    left.set_ylabel("max_k ||J_k − I||₂")
    left.legend(fontsize=8)
    err = np.maximum(np.asarray(m["telescoping_error_per_block"], dtype=float), 1e-17)
    right.semilogy(np.arange(1, len(err) + 1), err, ".-")
    right.axhline(R4_ROUNDING, color="k", ls="--", lw=1, label="refutation threshold")
    right.set_title("exact zeros drawn at 1e-17", fontsize=9)
    right.set_xlabel("block k")
    right.set_ylabel("‖x_k − (x_0 + Σ F_i)‖ / ‖x_k‖")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="R4",
    statement="x_L = x_0 + sum_i F_i(x_i); with F_i -> 0 every block is the identity.",
    source="000",
    expected=(
        "in a residual MLP the states equal x_0 plus the running sum of branch outputs to float64 "
        "rounding, and with the branches scaled to 0 every block Jacobian is exactly I"
    ),
    refuted_if=(
        "the telescoped sum misses x_L by more than 1e-12 (relative), or at branch scale 0 some "
        "||J_k - I||_2 exceeds 1e-12, or the gap does not shrink with the scale (exponent < 0.5)"
    ),
    presets={
        "tiny": {"model": "resnet_mlp", "depth": 4, "width": 8, "batch": 2, "scales": [0.0, 0.01, 0.1, 1.0]},
        "quick": {
            "model": "resnet_mlp",
            "depth": 24,
            "width": 32,
            "batch": 4,
            "scales": [0.0, 0.001, 0.01, 0.1, 1.0],
        },
        "full": {
            "model": "resnet_mlp",
            "depth": 64,
            "width": 128,
            "batch": 8,
            "scales": [0.0, 0.001, 0.01, 0.1, 1.0],
        },
    },
    measure=_measure_r4,
    judge=_judge_r4,
    plot=_plot_r4,
    counterexample={"model": "plain_mlp"},
)
