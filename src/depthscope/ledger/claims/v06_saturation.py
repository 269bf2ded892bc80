"""Claim V6 (seed 003): expansive W with saturated activations can still vanish, ||D W|| < 1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, VANISHING, _blocks_of, _build, _child_seed, _gain_class
from depthscope.probing import VERDICT_LOG_GAIN, probe
from depthscope.zoo.toys import activation_derivative

V6_BATCH = 4  # inputs per network; probe statistics are batch means
V6_SATURATED = 0.1  # a unit whose tanh' is below this counts as saturated


def _saturation(model: nn.Module, blocks: Chain, x0: torch.Tensor) -> tuple[float, float]:
    """(mean phi'(pre), fraction of units with phi' < V6_SATURATED) over every block and input; x0: (B, width)."""
    states = blocks.states(x0)
    derivs = torch.cat(
        [activation_derivative("tanh", block.linear(s)).flatten() for block, s in zip(model.blocks, states[:-1])]
    ).detach()
    return float(derivs.mean()), float((derivs < V6_SATURATED).to(torch.float64).mean())


def _v6_network(setting: Mapping[str, Any], sigma_b: float, seed: int, gen: torch.Generator) -> dict:
    """One tanh MLP with biases of std ``sigma_b``: per block ||W_k||_2, ||D_k W_k||_2 and RMS gain
    ||D_k W_k||_F / sqrt(n) (ds.probe, exact), the input gradient's log gain over the blocks for a unit
    random output cotangent, and the saturation."""
    width = setting["width"]
    model = _build(
        "plain_mlp",
        seed,
        depth=setting["depth"],
        width=width,
        activation="tanh",
        sigma_w=setting["sigma_w"],
        sigma_b=sigma_b,
        out_dim=width,
    )
    blocks, stem = _blocks_of(model)
    x0 = stem(torch.randn(V6_BATCH, width, generator=gen, dtype=torch.float64)).detach()
    report = probe(blocks, x0, exact=True, lyapunov=0, seed=_child_seed(gen))
    w_norm = [float(torch.linalg.matrix_norm(b.linear.weight.detach(), ord=2)) for b in model.blocks]
    mean_d, saturated = _saturation(model, blocks, x0)
    return {
        "sigma_b": sigma_b,
        "w_norm": w_norm,
        "dw_norm": report.column("local_sigma_max"),
        "rms_gain": report.column("local_rms"),
        "log_grad_gain": report.input_grad_log_norm,
        "log_grad_profile": report.column("grad_log_norm"),
        "mean_derivative": mean_d,
        "saturated_fraction": saturated,
    }


def _measure_v6(setting: Mapping[str, Any], seed: int) -> dict:
    """The network at (sigma_w, sigma_b) and, for the figure, the same sigma_w over a sweep of sigma_b."""
    gen = torch.Generator().manual_seed(seed)
    net_seed = _child_seed(gen)
    main = _v6_network(setting, setting["sigma_b"], net_seed, gen)
    sweep = [_v6_network(setting, sb, net_seed, gen) for sb in setting["sweep_sigma_b"]]
    return {"main": main, "sweep": sweep}


def _median(values) -> float:
    return float(np.median(values))


def _judge_v6(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    r = m["main"]
    w_min, dw_med, rms_med = min(r["w_norm"]), _median(r["dw_norm"]), _median(r["rms_gain"])
    below = sum(d < 1 for d in r["dw_norm"])
    where = (
        f"tanh, sigma_w = {setting['sigma_w']:g}, sigma_b = {setting['sigma_b']:g}: "
        f"every ||W_k||_2 >= {w_min:.3g}, "
        f"{r['saturated_fraction']:.0%} of units saturated (mean tanh' {r['mean_derivative']:.3g})"
    )
    if w_min <= 1:
        return refuted(f"{where}: not every W is expansive, so the setting cannot exhibit the claim")
    gain = r["log_grad_gain"]
    if _gain_class(gain) != VANISHING:
        return refuted(
            f"{where}; the gradient did not vanish: it changed by e^{gain:.2f} over {setting['depth']} blocks"
        )
    if below * 2 > len(r["dw_norm"]):
        return confirmed(
            f"{where}; ||D_k W_k||_2 < 1 in {below}/{len(r['dw_norm'])} blocks (median {dw_med:.3g}) and the "
            f"gradient vanished by e^{gain:.1f}"
        )
    sweep_ok = [s["sigma_b"] for s in m["sweep"] if _median(s["dw_norm"]) < 1]
    extra = (
        f"; the median ||D_k W_k||_2 fell below 1 only at sigma_b >= {min(sweep_ok):g}"
        if sweep_ok
        else "; no sigma_b of the sweep brought the median ||D_k W_k||_2 below 1"
    )
    return qualified(
        f"{where}; the gradient vanished by e^{gain:.1f}, but ||D_k W_k||_2 stayed >= 1 in "
        f"{len(r['dw_norm']) - below}/{len(r['dw_norm'])} blocks (median {dw_med:.3g}): what fell below 1 is the RMS "
        f"gain ||D_k W_k||_F / sqrt(n) (median {rms_med:.3g}), i.e. saturation quenches the typical direction, "
        f"not the operator norm{extra}"
    )


def _plot_v6(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    r = m["main"]
    k = np.arange(1, len(r["w_norm"]) + 1)
    axes[0].semilogy(k, r["w_norm"], "o-", ms=3, label="||W_k||₂")
    axes[0].semilogy(k, r["dw_norm"], "s-", ms=3, label="||D_k W_k||₂")
    axes[0].semilogy(k, r["rms_gain"], "^-", ms=3, label="||D_k W_k||_F/√n")
    axes[0].axhline(1, color="k", lw=1, ls="--")
    axes[0].set_xlabel("block k")
    axes[0].set_title(f"σ_w={setting['sigma_w']:g}, σ_b={setting['sigma_b']:g}", fontsize=9)
    axes[0].legend(fontsize=7)
    sb = [s["sigma_b"] for s in m["sweep"]]
    axes[1].plot(sb, [s["log_grad_gain"] for s in m["sweep"]], "o-", label="log gradient gain")
    axes[1].axhline(-VERDICT_LOG_GAIN, color="k", lw=1, ls="--", label="vanishing threshold")
    ax2 = axes[1].twinx()
    ax2.plot(sb, [_median(s["dw_norm"]) for s in m["sweep"]], "s--", color="C3", label="median ||D W||₂")
    ax2.set_ylabel("median ||D W||₂", color="C3")
    axes[1].set_xlabel("σ_b")
    axes[1].set_ylabel("log ||g_0|| / ||g_L||")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="V6",
    statement="Expansive W with saturated activations can still vanish: ||D W|| < 1.",
    source=SOURCE,
    expected="a tanh MLP with sigma_w = 4 (every ||W_k||_2 ~ 8 > 1) and biases of std 20 saturates most units, "
    "and the gradient falls below 1/10 across the blocks; the claim's mechanism is ||D_k W_k|| < 1",
    refuted_if="with every ||W_k||_2 > 1 the input gradient does not fall below 1/10 of the output gradient; "
    "qualified if it vanishes while ||D_k W_k||_2 >= 1 in most blocks (vanishing without the stated ||D W|| < 1)",
    presets={
        "tiny": {"depth": 8, "width": 16, "sigma_w": 4.0, "sigma_b": 20.0, "sweep_sigma_b": [0.0, 20.0, 100.0]},
        "quick": {
            "depth": 32,
            "width": 64,
            "sigma_w": 4.0,
            "sigma_b": 20.0,
            "sweep_sigma_b": [0.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0],
        },
        "full": {
            "depth": 64,
            "width": 256,
            "sigma_w": 4.0,
            "sigma_b": 20.0,
            "sweep_sigma_b": [0.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0],
        },
    },
    measure=_measure_v6,
    judge=_judge_v6,
    plot=_plot_v6,
    counterexample={"sigma_b": 0.0},
    references=(
        "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, Deep information propagation: the RMS "
        "gain per layer is sqrt(chi_1), chi_1 = sigma_w^2 E[phi'(h)^2]",
    ),
)
