"""Claim J6 (seed 001): pruning residual branches changes the effective depth and the number of gradient paths."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.ledger._data import digits
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger._train import train_classifier
from depthscope.ledger.claims._engineering_common import DIGITS_FEATURES
from depthscope.ledger.claims._residual_common import _per_example_jacobian
from depthscope.ledger.claims._seeds import run_seeds
from depthscope.zoo import create_model

J6_GRACEFUL_RATIO = 0.5  # residual accuracy lost per deleted branch / plain accuracy lost per deleted layer
J6_WORST_DROP = 0.1  # a single deleted branch costing more test accuracy than this is a weak spot
J6_DECOMPOSITION_TOL = 1e-4  # relative error of sum over path lengths vs the autograd gradient
J6_TRAINED_MIN = 0.5  # test accuracy (chance 0.1) both intact nets need for a lesion comparison to mean anything
J6_LR = 2e-3  # Adam step for both networks


def _path_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, float]:
    """The input gradient of a residual MLP split by path length, exactly.

    The Jacobian of the blocks, prod_l (I + A_l) with A_l = alpha J_F_l(x_l) at the network's own
    states, expands into 2^L paths; paths through k branches sum to P_k, and
    g_0 = sum_k P_k^T g_L. P_k^T g_L is built by the recursion u_k <- u_k + A_l^T u_{k-1} from the top
    block down. Deleted blocks (``nn.Identity``) have no branch and count for no path. Returns
    (``norms`` (L' + 1,) for the L' blocks with a branch: mean over examples of ||P_k^T g_L||, the
    relative error of sum_k P_k^T g_L against autograd's g_0). x: (B, 64), y: (B,).
    """
    blocks = [b for b in model.blocks if not isinstance(b, nn.Identity)]
    with torch.no_grad():
        h = model.stem(x)
        states = []
        for block in blocks:
            states.append(h)
            h = block(h)
    top = h.clone().requires_grad_(True)
    (g_top,) = torch.autograd.grad(nn.functional.cross_entropy(model.head(top), y, reduction="sum"), top)
    u = torch.zeros(len(blocks) + 1, *g_top.shape, dtype=torch.float64)
    u[0] = g_top
    for block, state in zip(reversed(blocks), reversed(states)):
        A = _per_example_jacobian(lambda v, b=block: b.alpha * b.branch(v), state).double()
        through = torch.einsum("bij,kbi->kbj", A, u)  # A^T u_k for every k
        u = u.clone()
        u[1:] += through[:-1]
    x0 = model.stem(x).detach().requires_grad_(True)
    h = x0
    for block in blocks:
        h = block(h)
    (g0,) = torch.autograd.grad(nn.functional.cross_entropy(model.head(h), y, reduction="sum"), x0)
    g0 = g0.double()
    error = float((u.sum(0) - g0).norm() / g0.norm())
    return u.norm(dim=-1).mean(-1).numpy(), error


def _effective_depth(norms: np.ndarray) -> float:
    """Gradient-weighted mean path length sum_k k ||P_k^T g|| / sum_k ||P_k^T g||; norms (L + 1,)."""
    k = np.arange(len(norms))
    return float((k * norms).sum() / norms.sum())


def _without_block(model: nn.Module, j: int) -> nn.Module:
    """A copy of a zoo MLP with block j replaced by the identity (a residual branch, or a plain layer, deleted)."""
    lesioned = copy.deepcopy(model)
    lesioned.blocks[j] = nn.Identity()
    return lesioned


@torch.no_grad()
def _test_metrics(model: nn.Module, data) -> tuple[float, float]:
    """(test accuracy, mean test cross-entropy)."""
    logits = model(data.x_test)
    return float((logits.argmax(1) == data.y_test).float().mean()), float(
        nn.functional.cross_entropy(logits, data.y_test)
    )


def _measure_j6(setting: Mapping[str, Any], seed: int) -> dict:
    """Train a residual and a plain MLP of the same depth on digits; delete each block in turn;
    split the residual net's input gradient by path length before and after each deletion."""
    data = digits()
    depth = setting["depth"]
    alpha = setting["branch_scale"] / math.sqrt(depth)
    xp, yp = data.x_test[: setting["n_path_examples"]], data.y_test[: setting["n_path_examples"]]
    runs = []
    for run_seed in run_seeds(seed, setting["seeds"]):
        nets = {}
        torch.manual_seed(run_seed)
        nets["residual"] = create_model(
            "resnet_mlp", depth=depth, width=setting["width"], alpha=alpha, in_dim=DIGITS_FEATURES
        )
        torch.manual_seed(run_seed)
        nets["plain"] = create_model("plain_mlp", depth=depth, width=setting["width"], in_dim=DIGITS_FEATURES)
        run: dict[str, Any] = {"seed": run_seed}
        for name, net in nets.items():
            train_classifier(net, data, steps=setting["train_steps"], lr=J6_LR, optimizer="adam", seed=run_seed)
            acc, loss = _test_metrics(net, data)
            lesions = [_test_metrics(_without_block(net, j), data) for j in range(depth)]
            run[name] = {
                "accuracy": acc,
                "loss": loss,
                "lesion_accuracy": [a for a, _ in lesions],
                "lesion_loss": [loss_k for _, loss_k in lesions],
            }
        norms, error = _path_gradients(nets["residual"], xp, yp)
        pruned = [_path_gradients(_without_block(nets["residual"], j), xp, yp)[0] for j in range(depth)]
        run["paths"] = {
            "norms": norms.tolist(),
            "decomposition_error": error,
            "effective_depth": _effective_depth(norms),
            "effective_depth_pruned": [_effective_depth(n) for n in pruned],
        }
        runs.append(run)
    counts = [math.comb(depth, k) / 2**depth for k in range(depth + 1)]
    return {
        "runs": runs,
        "path_count_share": counts,
        "paths_total": 2**depth,
        "paths_after_one_deletion": 2 ** (depth - 1),
    }


def _lesion_drop(run: Mapping[str, Any], name: str) -> float:
    """Test accuracy lost by deleting one block, averaged over the blocks."""
    net = run[name]
    return net["accuracy"] - float(np.mean(net["lesion_accuracy"]))


def _judge_j6(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    runs, L = m["runs"], setting["depth"]
    error = max(r["paths"]["decomposition_error"] for r in runs)
    if error > J6_DECOMPOSITION_TOL:
        return refuted(f"the gradient is not the sum of its path contributions: relative error {error:.2g}")
    untrained = [n for n in ("residual", "plain") if np.mean([r[n]["accuracy"] for r in runs]) < J6_TRAINED_MIN]
    if untrained:
        accs = ", ".join(f"{n} {np.mean([r[n]['accuracy'] for r in runs]):.3f}" for n in ("residual", "plain"))
        return qualified(
            f"the {' and '.join(untrained)} net did not train (test accuracy {accs}; needed {J6_TRAINED_MIN}), so deleting its "
            "blocks cannot show whether pruning is graceful"
        )
    res = float(np.mean([_lesion_drop(r, "residual") for r in runs]))
    plain = float(np.mean([_lesion_drop(r, "plain") for r in runs]))
    ratio = res / plain if plain > 0 else math.inf
    base = float(np.mean([r["residual"]["accuracy"] for r in runs]))
    k_eff = float(np.mean([r["paths"]["effective_depth"] for r in runs]))
    k_pruned = float(np.mean([np.mean(r["paths"]["effective_depth_pruned"]) for r in runs]))
    numbers = (
        f"deleting one of {L} blocks costs the residual net {res:.3f} test accuracy on average (from {base:.3f}) and the plain "
        f"net {plain:.3f} (ratio {ratio:.2f}); the gradient-weighted path length is {k_eff:.2f} of {L} blocks (path count mean "
        f"L/2 = {L / 2:g}) and {k_pruned:.2f} after one deletion, which halves the 2^{L} paths"
    )
    if ratio >= J6_GRACEFUL_RATIO:
        return refuted(f"pruning a residual branch breaks the network almost like removing a plain layer: {numbers}")
    worst = max(
        (r["residual"]["accuracy"] - a, j, r["seed"])
        for r in runs
        for j, a in enumerate(r["residual"]["lesion_accuracy"])
    )
    if worst[0] > J6_WORST_DROP or k_pruned >= k_eff:
        return qualified(
            f"{numbers}; but not every branch is dispensable: deleting block {worst[1]} (seed {worst[2]}) costs {worst[0]:.3f}"
            if worst[0] > J6_WORST_DROP
            else f"{numbers}; but pruning did not shorten the gradient's effective path length"
        )
    return confirmed(f"{numbers}; no single deletion costs more than {worst[0]:.3f}")


def _plot_j6(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    L = setting["depth"]
    for name, style in (("residual", "o-"), ("plain", "s-")):
        acc = np.mean([r[name]["lesion_accuracy"] for r in m["runs"]], axis=0)
        base = np.mean([r[name]["accuracy"] for r in m["runs"]])
        (line,) = ax.plot(np.arange(L), acc, style, ms=4, label=f"{name}, one block deleted")
        ax.axhline(base, color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("deleted block")
    ax.set_ylabel("test accuracy (dotted: intact)")
    ax.legend(fontsize=7)
    k = np.arange(L + 1)
    share = np.mean([np.asarray(r["paths"]["norms"]) / np.sum(r["paths"]["norms"]) for r in m["runs"]], axis=0)
    bx.bar(k - 0.2, m["path_count_share"], width=0.4, label="share of paths, C(L,k)/2^L")
    bx.bar(k + 0.2, share, width=0.4, label="share of gradient, ||P_k^T g||")
    bx.set_xlabel("path length k (branches passed)")
    bx.set_ylabel("share")
    bx.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="J6",
    statement="Pruning residual branches changes the effective depth and the number of gradient paths.",
    source="001",
    expected=(
        "deleting one branch of a trained residual MLP removes half of its 2^L paths and shortens the gradient-weighted "
        "path length, and costs little accuracy, while deleting one layer of a plain MLP of the same depth breaks it "
        "(Veit et al. 2016's lesion study)"
    ),
    refuted_if=(
        f"the residual net loses at least {J6_GRACEFUL_RATIO} x the test accuracy the plain net loses per deleted block "
        f"(mean over blocks and seeds), or the path contributions do not sum to the autograd gradient (rel. error > "
        f"{J6_DECOMPOSITION_TOL:g}); qualified if some single deletion costs more than {J6_WORST_DROP} accuracy or pruning "
        "does not shorten the effective path length"
    ),
    presets={
        "tiny": {
            "depth": 4,
            "width": 16,
            "branch_scale": 1.0,
            "train_steps": 100,
            "seeds": 1,
            "n_path_examples": 32,
        },
        "quick": {
            "depth": 12,
            "width": 32,
            "branch_scale": 1.0,
            "train_steps": 400,
            "seeds": 2,
            "n_path_examples": 64,
        },
        "full": {
            "depth": 24,
            "width": 64,
            "branch_scale": 1.0,
            "train_steps": 3000,
            "seeds": 3,
            "n_path_examples": 256,
        },
    },
    measure=_measure_j6,
    judge=_judge_j6,
    plot=_plot_j6,
    counterexample={"branch_scale": 4.0},
    references=(
        "Veit et al. 2016, Residual networks behave like ensembles of relatively shallow networks",
        "Huang et al. 2016, Deep networks with stochastic depth",
    ),
)
