"""Claim N2 (seed 002): a residual block's Jacobian I + DF has singular values within ||DF||_2 of 1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._norm_common import DTYPE, NORM_PRESERVATION_PAPER, PLOT_FLOOR
from depthscope.ledger.claims._seeds import SEED_STRIDE
from depthscope.probing import probe
from depthscope.zoo import create_model

# Weyl: every singular value of I + DF lies in [1 - ||DF||_2, 1 + ||DF||_2]; float64 slack.
N2_ROUNDING = 1e-9
# "Small" ||DF||_2 and "near 1": the claim is checked on the blocks whose branch Jacobian has at
# most this spectral norm, where Weyl puts every singular value within 10% of 1.
N2_SMALL_DF = 0.1


class _ScaledBranch:
    """x -> alpha F(x): a zoo residual block with its identity path removed; x: (B, width)."""

    def __init__(self, block: torch.nn.Module):
        self.block = block

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.block.alpha * self.block.branch(x)


def _n2_chain(model: torch.nn.Module, identity_path: bool) -> Chain:
    """The blocks of a zoo ``resnet_mlp`` as a chain: the blocks themselves (x + alpha F(x)), or,
    without the identity path, their scaled branches alone (alpha F(x))."""
    if identity_path:
        return Chain([(f"blocks.{i}", b) for i, b in enumerate(model.blocks)])
    return Chain([(f"branch.{i}", _ScaledBranch(b)) for i, b in enumerate(model.blocks)])


def branch_jacobian_norm(block: torch.nn.Module, x: torch.Tensor) -> float:
    """||alpha J_F(x)||_2 for a zoo residual block at one input ``x: (width,)``, by exact SVD."""
    jac = torch.func.jacrev(block.branch)(x).detach()  # (width, width)
    return float(block.alpha) * float(torch.linalg.matrix_norm(jac, ord=2))


def _measure_n2(setting: Mapping[str, Any], seed: int) -> dict:
    """For each branch scale alpha: a zoo ``resnet_mlp`` of ``blocks`` blocks (float64; the same
    weights and input ``(1, width)`` for every alpha, so only the scale changes); the exact singular
    values of every block's Jacobian (``probe(exact=True)``) and the spectral norm of its branch
    Jacobian DF = alpha J_F at the same input (an independent exact SVD)."""
    rows: dict[str, list] = {"alpha": [], "df_norm": [], "sigma_max": [], "sigma_min": [], "deviation": []}
    for alpha in setting["alphas"]:
        torch.manual_seed(SEED_STRIDE * seed)
        model = create_model("resnet_mlp", depth=setting["blocks"], width=setting["width"], alpha=alpha).to(DTYPE)
        gen = torch.Generator().manual_seed(seed)
        chain = _n2_chain(model, setting["identity_path"])
        with torch.no_grad():
            h0 = model.stem(torch.randn(1, setting["width"], generator=gen, dtype=DTYPE))
            inputs = chain.states(h0)[:-1]
        report = probe(chain, h0, exact=True, lyapunov=0)
        for block, x, stats in zip(model.blocks, inputs, report.blocks):
            rows["alpha"].append(float(alpha))
            rows["df_norm"].append(branch_jacobian_norm(block, x[0]))
            rows["sigma_max"].append(stats.local_sigma_max)
            rows["sigma_min"].append(stats.local_sigma_min)
            rows["deviation"].append(max(stats.local_sigma_max - 1.0, 1.0 - stats.local_sigma_min))
    excess = [d - e for d, e in zip(rows["deviation"], rows["df_norm"])]
    return {**rows, "weyl_excess": max(excess)}


def _judge_n2(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    n = len(m["alpha"])
    small = [i for i, e in enumerate(m["df_norm"]) if e <= N2_SMALL_DF]
    top = int(np.argmax(m["alpha"]))
    largest = (
        f"at the largest branch scale alpha = {m['alpha'][top]:g}, ||DF||_2 = {m['df_norm'][top]:.3g} and the "
        f"singular values span [{m['sigma_min'][top]:.3g}, {m['sigma_max'][top]:.3g}]"
    )
    if m["weyl_excess"] > N2_ROUNDING:
        worst = int(np.argmax([d - e for d, e in zip(m["deviation"], m["df_norm"])]))
        return refuted(
            f"a block's singular values left [1 - ||DF||_2, 1 + ||DF||_2] by {m['weyl_excess']:.3g}: at "
            f"||DF||_2 = {m['df_norm'][worst]:.3g} they span [{m['sigma_min'][worst]:.3g}, "
            f"{m['sigma_max'][worst]:.3g}] (identity path: {setting['identity_path']})"
        )
    if not small:
        return qualified(
            f"Weyl's interval held for all {n} blocks, but none had ||DF||_2 <= {N2_SMALL_DF} "
            f"(smallest {min(m['df_norm']):.3g}): 'near 1 when small' was not reached; {largest}"
        )
    dev_small = max(m["deviation"][i] for i in small)
    tight = [d / e for d, e in zip(m["deviation"], m["df_norm"]) if e > 0]
    return confirmed(
        f"all {n} blocks had max|sigma - 1| <= ||DF||_2 (Weyl; max|sigma - 1| / ||DF||_2 between "
        f"{min(tight):.2f} and {max(tight):.2f}); the {len(small)} blocks with ||DF||_2 <= {N2_SMALL_DF} had "
        f"every singular value within {dev_small:.3g} of 1; {largest}"
    )


def _plot_n2(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    eps = np.asarray(m["df_norm"])
    ax1.loglog(eps, np.maximum(m["deviation"], PLOT_FLOOR), "o", ms=4, label="max |σ − 1| of the block Jacobian")
    grid = np.geomspace(eps.min(), eps.max(), 50)
    ax1.loglog(grid, grid, "k--", lw=1, label="Weyl bound ‖DF‖₂")
    ax1.set_xlabel("‖DF‖₂ (branch Jacobian)")
    ax1.set_ylabel("max |σ − 1|")
    ax1.legend(fontsize=8)
    alpha = np.asarray(m["alpha"])
    ax2.semilogx(alpha, m["sigma_max"], "^", ms=4, label="σ_max")
    ax2.semilogx(alpha, m["sigma_min"], "v", ms=4, label="σ_min")
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_xlabel("branch scale α")
    ax2.set_ylabel("singular value")
    ax2.set_title(f"identity path: {setting['identity_path']}", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="N2",
    statement="A residual block's Jacobian I + DF has singular values near 1 when ||DF|| is small.",
    source="002",
    expected=(
        "for zoo residual MLP blocks x + alpha W2 relu(W1 x) at every branch scale alpha, every singular value "
        "of the block Jacobian lies within ||DF||_2 of 1, so blocks with ||DF||_2 <= 0.1 have all singular "
        "values in [0.9, 1.1]; larger alpha spreads them"
    ),
    refuted_if=(
        "some block's singular values (exact SVD, float64) lie farther from 1 than the spectral norm of its "
        "branch Jacobian DF (exact SVD at the same input) by more than 1e-9"
    ),
    presets={
        "tiny": {"width": 8, "blocks": 3, "alphas": [0.01, 0.1, 1.0], "identity_path": True},
        "quick": {
            "width": 64,
            "blocks": 6,
            "alphas": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
            "identity_path": True,
        },
        "full": {
            "width": 256,
            "blocks": 12,
            "alphas": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
            "identity_path": True,
        },
    },
    measure=_measure_n2,
    judge=_judge_n2,
    plot=_plot_n2,
    counterexample={"identity_path": False},
    references=(NORM_PRESERVATION_PAPER,),
)
