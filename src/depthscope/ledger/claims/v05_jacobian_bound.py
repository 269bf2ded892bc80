"""Claim V5 (seed 003): a layer's Jacobian is D W; the gradient is bounded by prod_k ||J_k||_2."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, _build, _child_seed, _jacobian
from depthscope.probing import probe
from depthscope.zoo.toys import activation_derivative

V5_DW_RTOL = 1e-12  # J_k against diag(phi'(W x + b)) W, float64
V5_LOG_SLACK = 1e-9  # a bound "holds" when log ||g_k|| <= log bound + this
V5_NORMS = {"spectral": "local_sigma_max", "rms": "local_rms"}  # bound_norm -> BlockStats field
COTANGENTS = ("random", "top")


def _dw_error(model: nn.Module, chain: Chain, x: torch.Tensor, activation: str) -> float:
    """max over blocks of ||J_k - D_k W_k||_F / ||J_k||_F, J_k by autograd at the block's input state."""
    states = chain.states(x)
    worst = 0.0
    for k, step in enumerate(chain.steps):
        if step.module not in list(model.blocks):
            continue
        W = step.module.linear.weight.detach()
        pre = step.module.linear(states[k]).detach()  # (1, width)
        dw = activation_derivative(activation, pre)[0].unsqueeze(1) * W
        J = _jacobian(step.module, states[k][0])
        worst = max(worst, float((J - dw).norm() / J.norm()))
    return worst


def _suffix_log_bound(report, field: str) -> np.ndarray:
    """sum_{j >= k} log ||J_j|| for every step k, ``(L,)``: the log of the claimed bound on ||g_k|| / ||g_L||."""
    logs = np.log(np.asarray(report.column(field), dtype=float))
    return np.cumsum(logs[::-1])[::-1]


def _measure_v5(setting: Mapping[str, Any], seed: int) -> dict:
    """Plain MLPs (stem, ``depth`` blocks phi(W x + b), head; all width x width). Per network: J_k = D_k W_k
    checked by autograd; ds.probe (exact SVDs) gives ||J_k||_2 and the RMS gain ||J_k||_F / sqrt(n), and
    log ||g_k|| for two unit output cotangents, a random one and the top left singular vector of the
    end-to-end Jacobian (the direction the gradient grows most). slack_k = log bound_k - log ||g_k||."""
    gen = torch.Generator().manual_seed(seed)
    width = setting["width"]
    field = V5_NORMS[setting["bound_norm"]]
    dw_err, slack_min, gaps, first = 0.0, math.inf, [], None
    for trial in range(setting["trials"]):
        model = _build(
            "plain_mlp",
            _child_seed(gen),
            depth=setting["depth"],
            width=width,
            activation=setting["activation"],
            sigma_w=setting["sigma_w"],
            out_dim=width,
        )
        chain = Chain.from_module(model)
        x = torch.randn(1, width, generator=gen, dtype=torch.float64)
        dw_err = max(dw_err, _dw_error(model, chain, x, setting["activation"]))
        u_top = torch.linalg.svd(_jacobian(chain, x[0]))[0][:, 0].unsqueeze(0)
        profiles = {}
        for name in COTANGENTS:
            loss = None if name == "random" else (lambda out, u=u_top: (out * u).sum())
            report = probe(chain, x, loss=loss, exact=True, lyapunov=0, seed=_child_seed(gen))
            bound = _suffix_log_bound(report, field)
            grad = np.asarray(report.column("grad_log_norm"))
            slack_min = min(slack_min, float((bound - grad).min()))
            gaps.append(float(bound[0] - grad[0]))
            profiles[name] = {"log_grad": grad.tolist(), "log_bound": bound.tolist()}
        if trial == 0:
            first = profiles
    steps = len(first["random"]["log_grad"])
    remaining = np.arange(steps, 0, -1)  # steps between each block's input and the output
    slope = float(np.polyfit(remaining, np.subtract(first["random"]["log_bound"], first["random"]["log_grad"]), 1)[0])
    return {
        "dw_max_rel_err": dw_err,
        "min_log_slack": slack_min,
        "input_log_gaps": gaps,
        "log_gap_per_step": slope,
        "steps": steps,
        "profiles": first,
    }


def _judge_v5(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    norm = "||J_k||_2" if setting["bound_norm"] == "spectral" else "||J_k||_F / sqrt(n)"
    if m["dw_max_rel_err"] > V5_DW_RTOL:
        return refuted(f"a block's Jacobian differs from D W by {m['dw_max_rel_err']:.3g} (relative)")
    if m["min_log_slack"] < -V5_LOG_SLACK:
        return refuted(
            f"the backward gradient exceeded the product of {norm} over the remaining steps by a factor "
            f"{math.exp(-m['min_log_slack']):.3g}"
        )
    return confirmed(
        f"J_k = D_k W_k to {m['dw_max_rel_err']:.1g}; at every step and for random and worst-case cotangents the "
        f"gradient stayed below prod {norm} (closest ratio actual/bound {math.exp(-m['min_log_slack']):.3g}); "
        f"the bound is loose: at the input by a factor e^{min(m['input_log_gaps']):.1f} to "
        f"e^{max(m['input_log_gaps']):.1f} "
        f"over {m['steps']} steps, the log gap growing ~{m['log_gap_per_step']:.2f} per step (random cotangent)"
    )


def _plot_v5(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, style in zip(COTANGENTS, ("-", "--")):
        p = m["profiles"][name]
        ax.plot(
            np.arange(len(p["log_grad"])), p["log_grad"], style, color="C0", label=f"log ||g_k|| ({name} cotangent)"
        )
    bound = m["profiles"][COTANGENTS[0]]["log_bound"]
    ax.plot(np.arange(len(bound)), bound, color="C3", label=f"log prod_(j>=k) ||J_j|| ({setting['bound_norm']})")
    ax.set_xlabel("step k (input of)")
    ax.set_ylabel("natural log")
    ax.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="V5",
    statement="A layer's Jacobian is D W; the backward gradient is bounded by the product of ||J_k||_2.",
    source=SOURCE,
    expected="each block's Jacobian equals diag(phi'(W x + b)) W to rounding; ||g_k|| <= ||g_L|| prod_{j>=k} "
    "||J_j||_2 at every step, also for the worst-case output direction; the bound loosens with depth",
    refuted_if=f"some J_k differs from D_k W_k by more than {V5_DW_RTOL:g} (relative), or log ||g_k|| exceeds "
    f"log ||g_L|| + sum_(j>=k) log ||J_j||_2 by more than {V5_LOG_SLACK:g} at some step",
    presets={
        "tiny": {
            "depth": 4,
            "width": 8,
            "activation": "tanh",
            "sigma_w": 1.0,
            "trials": 2,
            "bound_norm": "spectral",
        },
        "quick": {
            "depth": 32,
            "width": 64,
            "activation": "tanh",
            "sigma_w": 1.0,
            "trials": 3,
            "bound_norm": "spectral",
        },
        "full": {
            "depth": 64,
            "width": 256,
            "activation": "tanh",
            "sigma_w": 1.0,
            "trials": 5,
            "bound_norm": "spectral",
        },
    },
    measure=_measure_v5,
    judge=_judge_v5,
    plot=_plot_v5,
    counterexample={"bound_norm": "rms"},
    references=("the operator norm is submultiplicative: ||J_1^T ... J_L^T g|| <= prod ||J_k||_2 ||g||",),
)
