"""Claim V7 (seed 003): an ill-conditioned Jacobian vanishes and explodes at once, in different directions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, _blocks_of, _build, _child_seed, _jacobian
from depthscope.probing import VERDICT_LOG_GAIN, probe

V7_FACTOR = math.exp(VERDICT_LOG_GAIN)  # 10: beyond it a direction explodes (or, below 1/10, vanishes)
V7_ILL_CONDITIONED = V7_FACTOR**2  # condition number sigma_max / sigma_min above which J is ill-conditioned


def _v7_network(setting: Mapping[str, Any], sigma_w: float, gen: torch.Generator) -> dict:
    """One MLP's blocks (width n) and its end-to-end Jacobian J (autograd, float64).

    Top direction: the top left singular vector of J (an SVD resolves it to rounding) pushed backward
    through the blocks by ds.probe, log ||g_k|| per block; its gain is sigma_max. Bottom direction:
    an SVD cannot resolve sigma_min below ~1e-16 sigma_max, so it comes from the probe's Lyapunov
    spectrum (Benettin's QR, log domain): with J Q_0 = Q R, the backward gradient along the last
    column q_n of Q has gain ||J^T q_n|| = |R_nn|, and sigma_min <= min_i |R_ii| = exp(L lambda_n).
    So L lambda_n is the log gain of an actual direction and a certified bound on log sigma_min.
    """
    n = setting["width"]
    model = _build(
        "plain_mlp",
        _child_seed(gen),
        depth=setting["depth"],
        width=n,
        activation=setting["activation"],
        init=setting["init"],
        sigma_w=sigma_w,
        out_dim=n,
    )
    blocks, stem = _blocks_of(model)
    x0 = stem(torch.randn(1, n, generator=gen, dtype=torch.float64)).detach()
    U, S, _ = torch.linalg.svd(_jacobian(blocks, x0[0]))
    report = probe(
        blocks, x0, loss=lambda out, u=U[:, 0]: (out * u).sum(), lyapunov=n, exact=True, seed=_child_seed(gen)
    )
    steps = len(report.blocks)
    top, bottom = report.input_grad_log_norm, steps * report.lyapunov[-1]
    return {
        "sigma_w": sigma_w,
        "singular_values": S.tolist(),
        "lyapunov": report.lyapunov,
        "top_log_gain": top,
        "top_profile": report.column("grad_log_norm"),
        "bottom_log_gain": bottom,
        "log_condition_at_least": top - bottom,
        "both": top > VERDICT_LOG_GAIN and bottom < -VERDICT_LOG_GAIN,
    }


def _measure_v7(setting: Mapping[str, Any], seed: int) -> dict:
    """``trials`` networks at each weight scale of ``sigma_ws`` (see `_v7_network`)."""
    gen = torch.Generator().manual_seed(seed)
    return {"networks": [_v7_network(setting, sw, gen) for sw in setting["sigma_ws"] for _ in range(setting["trials"])]}


def _factor(log_gain: float) -> str:
    """e^log_gain as text, in powers of ten once it leaves [1e-3, 1e3]."""
    log10 = log_gain / math.log(10)
    return f"{math.exp(log_gain):.3g}" if abs(log10) <= 3 else f"10^{log10:.1f}"


def _v7_describe(r: Mapping[str, Any]) -> str:
    return (
        f"sigma_w {r['sigma_w']:g}: cond >= 10^{r['log_condition_at_least'] / math.log(10):.1f}, "
        f"top x{_factor(r['top_log_gain'])}, bottom x{_factor(r['bottom_log_gain'])}"
    )


def _judge_v7(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    nets = m["networks"]
    net = f"{setting['depth']} {setting['activation']} blocks ({setting['init']}), width {setting['width']}"
    ill = [r for r in nets if r["log_condition_at_least"] > math.log(V7_ILL_CONDITIONED)]
    both = [r for r in ill if r["both"]]
    if not both:
        shown = "; ".join(_v7_describe(r) for r in nets[:: max(1, setting["trials"])])
        return refuted(
            f"{net}: no network amplifies one direction beyond {V7_FACTOR:g}x while shrinking another below "
            f"1/{V7_FACTOR:g} ({len(ill)}/{len(nets)} ill-conditioned; {shown})"
        )
    example = max(both, key=lambda r: r["top_log_gain"])
    lyap = example["lyapunov"]
    seen = f"e.g. {_v7_describe(example)}, Lyapunov exponents {lyap[0]:+.3f}..{lyap[-1]:+.3f} per block"
    if len(both) == len(ill):
        return confirmed(
            f"{net}: all {len(ill)} ill-conditioned end-to-end Jacobians amplify their top singular "
            f"direction beyond {V7_FACTOR:g}x and shrink another direction below 1/{V7_FACTOR:g} at once "
            f"({seen})"
        )
    only = sorted({r["sigma_w"] for r in both})
    counter = max((r for r in ill if not r["both"]), key=lambda r: r["log_condition_at_least"])
    return qualified(
        f"{net}: {len(both)}/{len(ill)} ill-conditioned Jacobians vanish and explode at once "
        f"(sigma_w in {only}; {seen}); the others are just as ill-conditioned but stretch no direction beyond "
        f"{V7_FACTOR:g}x ({_v7_describe(counter)}): ill-conditioning gives both only when sigma_max > 1 > sigma_min"
    )


def _plot_v7(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    shown = m["networks"][:: max(1, setting["trials"])]
    for i, r in enumerate(shown):
        s = np.asarray(r["singular_values"])
        index = np.arange(1, s.size + 1)
        axes[0].plot(
            index, np.log10(np.maximum(s, np.finfo(float).tiny)), ".", color=f"C{i}", label=f"σ_w={r['sigma_w']:g}"
        )
        axes[0].plot(index, setting["depth"] * np.asarray(r["lyapunov"]) / math.log(10), "-", lw=1, color=f"C{i}")
    axes[0].axhline(0, color="k", lw=1, ls="--")
    axes[0].set_xlabel("index")
    axes[0].set_ylabel("log10 singular value")
    axes[0].set_title("dots: SVD of J (floors at float64 rounding); lines: L λ_i", fontsize=9)
    axes[0].legend(fontsize=7)
    sw = [r["sigma_w"] for r in m["networks"]]
    axes[1].plot(sw, [r["top_log_gain"] for r in m["networks"]], "^", label="top direction")
    axes[1].plot(sw, [r["bottom_log_gain"] for r in m["networks"]], "v", label="bottom direction")
    for level in (-VERDICT_LOG_GAIN, VERDICT_LOG_GAIN):
        axes[1].axhline(level, color="k", lw=0.8, ls=":")
    axes[1].set_xlabel("σ_w")
    axes[1].set_ylabel("log backward gain")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="V7",
    statement="An ill-conditioned Jacobian vanishes and explodes at once, in different directions.",
    source=SOURCE,
    expected="in tanh MLPs the end-to-end Jacobian is ill-conditioned at every weight scale; in the chaotic "
    "phase (sigma_w > 1) its top singular direction is amplified more than 10x while its bottom direction "
    "shrinks below 1/10 in the same network",
    refuted_if="no network of the sweep amplifies its top left singular direction beyond 10x while shrinking the "
    "bottom one below 1/10; qualified if some ill-conditioned (cond > 100) Jacobians do not show both",
    presets={
        "tiny": {
            "depth": 24,
            "width": 32,
            "activation": "tanh",
            "init": "gaussian",
            "sigma_ws": [1.0, 3.0],
            "trials": 1,
        },
        "quick": {
            "depth": 32,
            "width": 64,
            "activation": "tanh",
            "init": "gaussian",
            "sigma_ws": [0.5, 1.0, 1.5, 2.0, 3.0],
            "trials": 2,
        },
        "full": {
            "depth": 64,
            "width": 256,
            "activation": "tanh",
            "init": "gaussian",
            "sigma_ws": [0.5, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0],
            "trials": 3,
        },
    },
    measure=_measure_v7,
    judge=_judge_v7,
    plot=_plot_v7,
    counterexample={"activation": "linear", "init": "orthogonal"},
    references=(
        "Pennington, Schoenholz & Ganguli 2017: the spread of the Jacobian's singular values, not their "
        "mean, separates isometric from non-isometric networks",
    ),
)
