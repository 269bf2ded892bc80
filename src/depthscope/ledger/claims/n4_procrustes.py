"""Claim N4 (seed 002): transition blocks break norm preservation; a Procrustes projection repairs it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._norm_common import DTYPE, NORM_PRESERVATION_PAPER
from depthscope.ledger.claims._seeds import run_seeds
from depthscope.probing import probe
from depthscope.zoo import conv_operator_singular_values, create_model
from depthscope.zoo.cifar_resnet import CIFAR_CHANNELS, PreActBlock
from depthscope.zoo.procresnet import Transition
from depthscope.zoo.procrustes import procrustes_weight

# After Procrustes the largest and smallest nonzero singular value of a 1x1 transition agree to
# Newton-Schulz accuracy (exact for 1x1 kernels up to rounding).
N4_EQUAL_RTOL = 1e-6
INIT_KINDS = ("random", "procrustes")
# The kernel size of the identity blocks' convolutions, for which Procrustes is not exact.
N4_WIDE_KERNEL = 3


def _n4_network(setting: Mapping[str, Any], procrustes: bool, net_seed: int) -> torch.nn.Module:
    """A zoo ``procresnet`` (float64, eval mode) with each identity block's last convolution scaled by
    ``branch_scale`` (near-identity blocks, the setting of the theory) and, when projected, each
    transition's weight multiplied by ``target_gain`` (1 keeps the target sqrt(c_out / c_in))."""
    torch.manual_seed(net_seed)
    model = (
        create_model(
            "procresnet",
            n=setting["n"],
            width=setting["width"],
            input_size=setting["input_size"],
            procrustes=procrustes,
        )
        .to(DTYPE)
        .eval()
    )
    with torch.no_grad():
        for block in model.blocks:
            if isinstance(block, PreActBlock):
                block.conv2.weight.mul_(setting["branch_scale"])
        if procrustes:
            for transition in model.transitions():
                transition.conv.weight.mul_(setting["target_gain"])
    return model


def operator_spread(weight: torch.Tensor, size: tuple[int, int]) -> float:
    """sigma_max / sigma_min of the nonzero singular values of a convolution ``(c_out, c_in, k, k)``
    acting on ``size`` feature maps (Sedghi et al.; a stride only subsamples, an isometry on the
    coordinates it keeps, so the stride-1 operator has the same nonzero singular values)."""
    sv = conv_operator_singular_values(weight.detach(), size)
    return float(sv.max() / sv.min())


def operator_log_std(weight: torch.Tensor, size: tuple[int, int]) -> float:
    """The standard deviation of ln sigma over the singular values of a convolution ``(c_out, c_in, k, k)``
    on ``size`` maps: 0 exactly when they are all equal; unlike max/min it measures the bulk."""
    return float(torch.log(conv_operator_singular_values(weight.detach(), size)).std(correction=0))


def _n4_probe(model: torch.nn.Module, x: torch.Tensor, seed: int) -> dict:
    """Per-block gradient ratios of ``model`` at ``x: (B, C, n, n)`` split by block kind, and the
    operator spread of each transition at its input size."""
    report = probe(model, x, lyapunov=0, sigma_min=False, seed=seed)
    out: dict[str, list] = {"kinds": [], "ratios": [], "identity": [], "transition": [], "spread": [], "target": []}
    for stats in report.blocks:
        if not stats.name.startswith("blocks."):
            continue
        block = model.blocks[int(stats.name.split(".")[1])]
        kind = "transition" if isinstance(block, Transition) else "identity"
        out["kinds"].append(kind)
        out["ratios"].append(stats.grad_ratio)
        out[kind].append(stats.grad_ratio)
        if kind == "transition":
            c_out, c_in = block.conv.weight.shape[:2]
            out["spread"].append(operator_spread(block.conv.weight, stats.in_shape[1:]))
            out["target"].append(math.sqrt(c_out / c_in))
    return out


def _kernel3_spreads(setting: Mapping[str, Any], seed: int) -> dict:
    """A random k x k kernel (c, c, k, k), k = N4_WIDE_KERNEL, N(0, 1/(k^2 c)), on n x n maps: operator
    spread before and after `procrustes_weight` (the crop back to k x k support makes it inexact)."""
    c, n, k = setting["kernel3_channels"], setting["kernel3_size"], N4_WIDE_KERNEL
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(c, c, k, k, generator=gen, dtype=DTYPE) / math.sqrt(k * k * c)
    projected = procrustes_weight(weight, n)
    return {
        "spread_before": operator_spread(weight, (n, n)),
        "spread_after": operator_spread(projected, (n, n)),
        "log_std_before": operator_log_std(weight, (n, n)),
        "log_std_after": operator_log_std(projected, (n, n)),
    }


def _log_devs(ratios) -> np.ndarray:
    """|ln r| for each ratio ``(m,)``: a ratio r and 1/r deviate equally from norm preservation."""
    return np.abs(np.log(np.asarray(ratios, dtype=float)))


def _measure_n4(setting: Mapping[str, Any], seed: int) -> dict:
    """The same networks (same seed) with random-init and Procrustes-projected transitions, probed
    at the same input batch."""
    per: dict[str, dict[str, list]] = {k: {"identity": [], "transition": [], "spread": []} for k in INIT_KINDS}
    first: dict[str, list] = {}
    kinds: list[str] = []
    for i, net_seed in enumerate(run_seeds(seed, setting["seeds"])):
        gen = torch.Generator().manual_seed(net_seed)
        size = setting["input_size"]
        x = torch.randn(setting["batch"], CIFAR_CHANNELS, size, size, generator=gen, dtype=DTYPE)
        for kind in INIT_KINDS:
            got = _n4_probe(_n4_network(setting, kind == "procrustes", net_seed), x, seed)
            for key in per[kind]:
                per[kind][key].extend(got[key])
            if i == 0:
                first[kind], kinds, target = got["ratios"], got["kinds"], got["target"]
    rnd, proc = _log_devs(per["random"]["transition"]), _log_devs(per["procrustes"]["transition"])
    # With every nonzero singular value equal to s, ||W^T g|| = s ||P g|| (P: projector on W's range),
    # so a measured ratio r means a fraction (r / s)^2 of the gradient's energy lies in that range.
    gain = setting["target_gain"]
    fraction = [(r / (gain * t)) ** 2 for r, t in zip(per["procrustes"]["transition"], target * setting["seeds"])]
    return {
        "identity_ratios": {k: per[k]["identity"] for k in INIT_KINDS},
        "transition_ratios": {k: per[k]["transition"] for k in INIT_KINDS},
        "transition_spread": {k: per[k]["spread"] for k in INIT_KINDS},
        "transition_target": target,
        "identity_band": float(_log_devs(per["random"]["identity"] + per["procrustes"]["identity"]).max()),
        "random_max": float(rnd.max()),
        "procrustes_max": float(proc.max()),
        "random_rms": float(np.sqrt(np.mean(rnd**2))),
        "procrustes_rms": float(np.sqrt(np.mean(proc**2))),
        "range_fraction": fraction,
        "first_network": {"kinds": kinds, **first},
        "kernel3": _kernel3_spreads(setting, seed),
    }


def _judge_n4(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    band = m["identity_band"]
    spread_rnd = min(m["transition_spread"]["random"])
    spread_proc = max(m["transition_spread"]["procrustes"])
    k3 = m["kernel3"]
    numbers = (
        f"max |ln grad_ratio| of identity blocks {band:.3g} (branch scale {setting['branch_scale']}); of transitions "
        f"{m['random_max']:.3g} at random init (RMS {m['random_rms']:.3g}) and {m['procrustes_max']:.3g} after "
        f"Procrustes (RMS {m['procrustes_rms']:.3g}, gain {setting['target_gain']})"
    )
    kernel3 = (
        f"for a {N4_WIDE_KERNEL}x{N4_WIDE_KERNEL} kernel ({setting['kernel3_channels']} channels, "
        f"{setting['kernel3_size']}x{setting['kernel3_size']} maps) Procrustes is not exact: the std of ln sigma "
        f"went {k3['log_std_before']:.3g} -> {k3['log_std_after']:.3g} and sigma_max/sigma_min "
        f"{k3['spread_before']:.3g} -> {k3['spread_after']:.3g}"
    )
    spreads = f"transition singular-value spread >= {spread_rnd:.3g} at random init, {spread_proc:.9f} after Procrustes"
    if spread_proc > 1.0 + N4_EQUAL_RTOL:
        return refuted(f"Procrustes did not equalise the transitions' singular values: {spreads}")
    if m["procrustes_rms"] >= m["random_rms"]:
        return refuted(
            f"{numbers}: equal singular values did not bring the transitions closer to norm preservation; {spreads}"
        )
    if m["random_max"] <= band:
        return qualified(
            f"{numbers}: random-init transitions stayed inside the identity blocks' band, so only the {spreads} "
            f"shows a break; {kernel3}"
        )
    if m["procrustes_max"] > band:
        f = m["range_fraction"]
        c_ratio = 1.0 / m["transition_target"][0] ** 2
        return qualified(
            f"{numbers}: Procrustes narrows the transitions' deviation "
            f"(RMS {m['random_rms'] / m['procrustes_rms']:.2g}x) "
            f"but leaves it outside the identity blocks' band. With equal singular values s the ratio is s sqrt(f), "
            f"f the share of the gradient's energy in the projection's range; the measured ratios give f in "
            f"[{min(f):.2f}, {max(f):.2f}] against c_in/c_out = {c_ratio:.2f}: a channel-expanding projection "
            f"discards the rest, which equal singular values cannot prevent; {spreads}; {kernel3}"
        )
    return confirmed(
        f"{numbers}: Procrustes brings the transitions inside the identity blocks' band; {spreads}; {kernel3}"
    )


def _plot_n4(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    first = m["first_network"]
    k = np.arange(len(first["kinds"]))
    band = m["identity_band"]
    ax1.axhspan(math.exp(-band), math.exp(band), color="0.85", label="identity blocks' band")
    for kind, marker in zip(INIT_KINDS, ("o", "s")):
        ax1.plot(k, first[kind], marker + "-", ms=5, lw=1, label=f"{kind} transitions (network of seed 0)")
    for j, kind in enumerate(first["kinds"]):
        if kind == "transition":
            ax1.axvline(j, color="C3", lw=0.6, ls=":")
    ax1.set_xlabel("block (dotted: transition)")
    ax1.set_ylabel("‖g_k‖ / ‖g_{k+1}‖")
    ax1.legend(fontsize=8)
    groups = [
        m["transition_ratios"]["random"],
        m["transition_ratios"]["procrustes"],
        m["identity_ratios"]["procrustes"],
    ]
    ax2.boxplot([np.abs(np.log(g)) for g in groups])
    ax2.set_xticks([1, 2, 3], ["random\ntransitions", "Procrustes\ntransitions", "identity\nblocks"])
    ax2.set_ylabel("|ln ratio| (all seeds)")
    ax2.set_yscale("log")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    id="N4",
    statement=(
        "Transition (projection) blocks break norm preservation; making their nonzero singular values equal "
        "(Procrustes, iterative, matrix products only, no SVD) restores it."
    ),
    source="002",
    expected=(
        "in a zoo ProcResNet with near-identity identity blocks, random-init 1x1 strided transitions change "
        "the gradient norm by more than any identity block; after procrustes_ their nonzero singular values "
        "are all sqrt(c_out/c_in) and their gradient ratio lies within the identity blocks' band"
    ),
    refuted_if=(
        "after Procrustes the transitions' nonzero singular values differ by more than 1e-6 (relative), or the "
        "projected transitions' RMS |ln grad_ratio| is not below that of the random-init transitions. "
        "Qualified if random transitions stay inside the identity blocks' band (nothing to restore) or "
        "projected ones stay outside it (narrowed, not restored)"
    ),
    presets={
        "tiny": {
            "n": 1,
            "width": 0.25,
            "input_size": 8,
            "batch": 4,
            "seeds": 2,
            "branch_scale": 0.1,
            "target_gain": 1.0,
            "kernel3_channels": 4,
            "kernel3_size": 6,
        },
        "quick": {
            "n": 1,
            "width": 0.25,
            "input_size": 8,
            "batch": 4,
            "seeds": 12,
            "branch_scale": 0.1,
            "target_gain": 1.0,
            "kernel3_channels": 16,
            "kernel3_size": 8,
        },
        "full": {
            "n": 3,
            "width": 1.0,
            "input_size": 32,
            "batch": 4,
            "seeds": 8,
            "branch_scale": 0.1,
            "target_gain": 1.0,
            "kernel3_channels": 64,
            "kernel3_size": 16,
        },
    },
    measure=_measure_n4,
    judge=_judge_n4,
    plot=_plot_n4,
    counterexample={"target_gain": 0.5},
    references=(
        NORM_PRESERVATION_PAPER,
        "H. Sedghi, V. Gupta, P. M. Long, The singular values of convolutional layers, ICLR 2019",
    ),
)
