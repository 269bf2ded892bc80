"""Claim R3 (seed 000): degradation, deeper plain networks train worse than shallower ones; residual ones do not."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope._errors import NonFiniteError
from depthscope.ledger._data import Dataset
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger._train import train_classifier
from depthscope.ledger.claims._training_common import _data
from depthscope.zoo import create_model
from depthscope.zoo.mlp import ResidualBlock

R3_ARMS = {"plain": "plain_mlp", "residual": "resnet_mlp", "rezero": "rezero_mlp"}
R3_RELATIVE_MARGIN = 0.25  # deeper "trains worse": final loss above (1 + 25%) x the shallow one ...
R3_ABSOLUTE_MARGIN = 0.02  # ... plus 0.02 nats, so that seed noise on a near-zero loss is not degradation
R3_MITIGATION = 0.5  # residual nets degrading by at least half the plain nets' loss gap: not cured
R3_SMOOTHING = 20  # training-loss curves are trailing means over this many mini-batches
R3_CURVE_POINTS = 100  # points per stored curve


class _SkipScaled(nn.Module):
    """A zoo residual block with its identity path scaled: x -> skip * x + alpha * F(x); x: (B, width).

    ``skip = 1`` is the block itself; ``skip = 0`` removes the identity path and leaves a plain
    two-layer block alpha * W2 relu(W1 x + b1).
    """

    def __init__(self, block: ResidualBlock, skip: float):
        super().__init__()
        self.block = block
        self.skip = float(skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip * x + self.block.alpha * self.block.branch(x)


def _build_arm(arm: str, depth: int, setting: Mapping[str, Any], data: Dataset) -> nn.Module:
    """The zoo MLP of arm ``arm`` (plain, residual with alpha = 1/sqrt(depth), or ReZero) for ``data``.

    Residual arms get their identity path scaled by ``setting["skip"]``.
    """
    model = create_model(
        R3_ARMS[arm], depth=depth, width=setting["width"], in_dim=data.n_features, out_dim=data.n_classes
    )
    if arm != "plain" and setting["skip"] != 1.0:
        for i, block in enumerate(model.blocks):
            model.blocks[i] = _SkipScaled(block, setting["skip"])
    return model


def _smoothed(losses: list[float], window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (fewer at the start): (steps,) -> (steps,)."""
    x = np.asarray(losses, dtype=float)
    if x.size == 0:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    ends = np.arange(1, x.size + 1)
    starts = np.maximum(ends - window, 0)
    return (c[ends] - c[starts]) / (ends - starts)


def _steps_to_threshold(losses: list[float], threshold: float, window: int) -> int | None:
    """First step (1-based) at which the smoothed training loss is <= ``threshold``; None if never."""
    below = np.nonzero(_smoothed(losses, window) <= threshold)[0]
    return int(below[0]) + 1 if below.size else None


def _degrades(deep_loss: float, shallow_loss: float) -> bool:
    """True when the deeper net's final training loss is worse beyond both margins."""
    return deep_loss > shallow_loss * (1 + R3_RELATIVE_MARGIN) + R3_ABSOLUTE_MARGIN


def _train_arm(arm: str, depth: int, setting: Mapping[str, Any], data: Dataset, run_seed: int) -> dict:
    """Train one network; a run whose loss turns non-finite counts as final loss inf."""
    torch.manual_seed(run_seed)
    model = _build_arm(arm, depth, setting, data)
    try:
        run = train_classifier(
            model,
            data,
            steps=setting["steps"],
            lr=setting["lr"],
            batch=setting["batch"],
            seed=run_seed,
            optimizer=setting["optimizer"],
        )
    except NonFiniteError:
        never = [None for _ in setting["loss_thresholds"]]
        return {"final_loss": math.inf, "test_accuracy": 0.0, "losses": [], "steps_to_threshold": never}
    return {
        "final_loss": run.final_train_loss,
        "test_accuracy": run.test_accuracy,
        "losses": run.train_loss,
        "steps_to_threshold": [
            _steps_to_threshold(run.train_loss, t, R3_SMOOTHING) for t in setting["loss_thresholds"]
        ],
    }


def _curve(runs: list[dict], steps: int) -> list[float]:
    """Mean over seeds of the smoothed loss curves, thinned to about R3_CURVE_POINTS points."""
    curves = [_smoothed(r["losses"], R3_SMOOTHING) for r in runs if r["losses"]]
    if not curves:
        return []
    stride = max(1, steps // R3_CURVE_POINTS)
    return np.mean(curves, axis=0)[::stride].tolist()


def _measure_r3(setting: Mapping[str, Any], seed: int) -> dict:
    """Every arm at every depth, ``seeds`` runs each, same optimiser, steps, lr and batches.

    Returns per arm lists aligned with ``depths``: final full-training-set losses per seed, their
    mean, test accuracies, steps to each loss threshold ([threshold][seed], None = not reached) and
    the mean smoothed training curve.
    """
    data = _data(setting, seed)
    arms: dict[str, dict[str, list]] = {}
    for arm in setting["arms"]:
        rec = {"final_loss": [], "mean_final_loss": [], "test_accuracy": [], "steps_to_threshold": [], "curve": []}
        for depth in setting["depths"]:
            runs = [_train_arm(arm, depth, setting, data, seed + k) for k in range(setting["seeds"])]
            finals = [r["final_loss"] for r in runs]
            rec["final_loss"].append(finals)
            rec["mean_final_loss"].append(float(np.mean(finals)))
            rec["test_accuracy"].append(float(np.mean([r["test_accuracy"] for r in runs])))
            rec["steps_to_threshold"].append(
                [[r["steps_to_threshold"][j] for r in runs] for j in range(len(setting["loss_thresholds"]))]
            )
            rec["curve"].append(_curve(runs, setting["steps"]))
        arms[arm] = rec
    stride = max(1, setting["steps"] // R3_CURVE_POINTS)
    return {
        "depths": list(setting["depths"]),
        "arms": arms,
        "curve_steps": list(range(1, setting["steps"] + 1, stride)),
        "convergence": _convergence(arms, setting),
    }


def _median_steps(steps: list[int | None]) -> float:
    """Median over seeds of the steps to threshold; a run that never got there counts as inf."""
    return float(np.median([math.inf if s is None else s for s in steps]))


def _convergence(arms: Mapping[str, Mapping[str, list]], setting: Mapping[str, Any]) -> list[dict]:
    """At the deepest depth, per loss threshold: median steps to reach it per arm, and whether
    ReZero got there strictly first."""
    out = []
    for j, threshold in enumerate(setting["loss_thresholds"]):
        steps = {arm: _median_steps(rec["steps_to_threshold"][-1][j]) for arm, rec in arms.items()}
        entry: dict[str, Any] = {"depth": setting["depths"][-1], "threshold": threshold, "median_steps": steps}
        if "rezero" in steps:
            others = [v for a, v in steps.items() if a != "rezero"]
            entry["rezero_fastest"] = bool(math.isfinite(steps["rezero"]) and all(steps["rezero"] < v for v in others))
        out.append(entry)
    return out


def _fmt_steps(value: float, budget: int) -> str:
    return f"{value:.0f}" if math.isfinite(value) else f"not within {budget}"


def _convergence_sentence(conv: list[Mapping[str, Any]], steps: int) -> str:
    """One clause per threshold: median steps per arm and whether ReZero was first."""
    clauses = []
    for entry in conv:
        parts = ", ".join(f"{arm} {_fmt_steps(v, steps)}" for arm, v in entry["median_steps"].items())
        clause = f"to loss {entry['threshold']:g}: {parts}"
        if "rezero_fastest" in entry:
            clause += " (ReZero first)" if entry["rezero_fastest"] else " (ReZero not first)"
        clauses.append(clause)
    return f"Median steps at depth {conv[0]['depth']}, smoothed training loss, " + "; ".join(clauses)


def _judge_r3(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    depths = m["depths"]
    plain = m["arms"]["plain"]["mean_final_loss"]
    res = m["arms"]["residual"]["mean_final_loss"]
    table = (
        "final training loss by depth "
        + ", ".join(str(d) for d in depths)
        + ": plain "
        + "/".join(f"{v:.3g}" for v in plain)
        + ", residual "
        + "/".join(f"{v:.3g}" for v in res)
    )
    speed = _convergence_sentence(m["convergence"], setting["steps"])
    plain_gap, res_gap = plain[-1] - plain[0], res[-1] - res[0]
    if not _degrades(plain[-1], plain[0]):
        return refuted(
            f"the deepest plain net trains no worse than the shallowest ({table}); no degradation to cure. {speed}"
        )
    if _degrades(res[-1], res[0]) and res_gap >= R3_MITIGATION * plain_gap:
        return refuted(
            f"residual nets degrade too: the deepest one's loss rises by {res_gap:.3g} nats, at least "
            f"{R3_MITIGATION:.0%} of the plain nets' rise of {plain_gap:.3g} ({table}). {speed}"
        )
    plain_ok = [d for d, v in zip(depths[1:], plain[1:]) if not _degrades(v, plain[0])]
    res_bad = [d for d, v in zip(depths[1:], res[1:]) if _degrades(v, res[0])]
    if plain_ok or res_bad:
        notes = []
        if plain_ok:
            notes.append(
                f"plain nets of depth {plain_ok} train as well as depth {depths[0]}: degradation appears only deeper"
            )
        if res_bad:
            notes.append(f"residual nets of depth {res_bad} degrade, by less than {R3_MITIGATION:.0%} of the plain gap")
        return qualified(f"{'; '.join(notes)} ({table}). {speed}")
    return confirmed(
        f"every deeper plain net trains worse than depth {depths[0]} "
        f"(loss +{plain_gap:.3g} nats at depth {depths[-1]}) "
        f"while no residual net does ({res_gap:+.3g}) ({table}). {speed}"
    )


R3_COLORS = {"plain": "tab:red", "residual": "tab:blue", "rezero": "tab:green"}


def _plot_r3(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (ax_depth, ax_curve) = plt.subplots(1, 2, figsize=(10, 3.6))
    depths = m["depths"]
    for arm, rec in m["arms"].items():
        finals = np.asarray(rec["final_loss"], dtype=float)
        finite = np.where(np.isfinite(finals), finals, np.nan)
        means = np.asarray(rec["mean_final_loss"], dtype=float)
        ax_depth.plot(depths, np.where(np.isfinite(means), means, np.nan), "o-", color=R3_COLORS.get(arm), label=arm)
        for k, depth in enumerate(depths):
            ax_depth.scatter([depth] * finite.shape[1], finite[k], s=8, color=R3_COLORS.get(arm), alpha=0.5)
        for k, ls in ((0, ":"), (-1, "-")):
            if rec["curve"][k]:
                steps = m["curve_steps"][: len(rec["curve"][k])]
                ax_curve.plot(steps, rec["curve"][k], ls, color=R3_COLORS.get(arm), label=f"{arm}, depth {depths[k]}")
    ax_depth.set_xlabel("depth (blocks)")
    ax_depth.set_ylabel("final training loss (nats)")
    ax_depth.set_yscale("log")
    ax_depth.legend(fontsize=8)
    for threshold in setting["loss_thresholds"]:
        ax_curve.axhline(threshold, color="k", lw=0.8, ls="--")
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel(f"training loss (mean of {R3_SMOOTHING} batches)")
    ax_curve.set_yscale("log")
    ax_curve.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="R3",
    statement="Degradation: deeper plain networks train worse than shallower ones; residual ones do not.",
    source="000",
    expected=(
        "with the same optimiser, learning rate, batches and step budget, the deepest plain MLP ends with a "
        "higher training loss than the shallowest, while the deepest residual MLP does not; ReZero (learnable "
        "alpha = 0 at init) reaches the loss thresholds in fewer steps than the residual and plain nets "
        "(reported, not part of the verdict)"
    ),
    refuted_if=(
        f"the deepest plain net's mean final training loss is not above (1 + {R3_RELATIVE_MARGIN}) x the "
        f"shallowest's + {R3_ABSOLUTE_MARGIN} nats (no degradation), or the deepest residual net degrades by that "
        f"criterion with a loss rise at least {R3_MITIGATION:.0%} of the plain nets'; qualified if an "
        f"intermediate plain depth does not degrade or a residual depth degrades by less"
    ),
    presets={
        "tiny": {
            "dataset": "digits",
            "n_train": 400,
            "n_test": 200,
            "depths": [2, 16],
            "width": 16,
            "arms": ["plain", "residual", "rezero"],
            "steps": 120,
            "lr": 0.01,
            "batch": 64,
            "optimizer": "sgd",
            "seeds": 1,
            "loss_thresholds": [0.5, 0.2],
            "skip": 1.0,
        },
        "quick": {
            "dataset": "digits",
            "n_train": None,
            "n_test": None,
            "depths": [8, 20, 56],
            "width": 64,
            "arms": ["plain", "residual", "rezero"],
            "steps": 300,
            "lr": 0.01,
            "batch": 128,
            "optimizer": "sgd",
            "seeds": 3,
            "loss_thresholds": [0.5, 0.05],
            "skip": 1.0,
        },
        "full": {
            "dataset": "mnist",
            "n_train": None,
            "n_test": None,
            "depths": [8, 20, 56, 110],
            "width": 128,
            "arms": ["plain", "residual", "rezero"],
            "steps": 1500,
            "lr": 0.01,
            "batch": 128,
            "optimizer": "sgd",
            "seeds": 2,
            "loss_thresholds": [0.5, 0.05],
            "skip": 1.0,
        },
    },
    measure=_measure_r3,
    judge=_judge_r3,
    plot=_plot_r3,
    counterexample={"skip": 0.0},
    references=(
        "He et al. 2016, 'Deep residual learning for image recognition' (CVPR): a 56-layer plain net has higher "
        "training error than a 20-layer one on CIFAR-10 (Fig. 1), 34 vs 18 layers on ImageNet (Fig. 4); the "
        "residual nets of the same depths do not degrade",
        "Bachlechner et al. 2020, 'ReZero is all you need: fast convergence at large depth': residual weights "
        "initialised at zero converge faster",
    ),
)
