"""Helpers shared by claims J3 and J4 (seed 001): transformer LMs by LayerNorm placement, their backward signal, its decay."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from depthscope.chain import Chain
from depthscope.ledger.claims._seeds import run_seeds
from depthscope.zoo import create_model

LN_MODELS = {"postln": "transformer_postln", "preln": "transformer_preln", "deepnorm": "transformer_deepnorm"}
# The "contracting" variant: a zoo ReZero transformer (branches switched off at init, no LayerNorm)
# whose identity path carries CONTRACTING_GAIN * x in each of its two sublayers: a highway that
# contracts, the mechanism J4 rules out, with the exact decay rate 2 log(1 / CONTRACTING_GAIN) per block.
CONTRACTING_GAIN = 0.8
LN_VARIANTS = (*LN_MODELS, "contracting")
# Decay toward the input that counts: the gradient at the input at most half of that at the output.
DECAY_MIN_LOG = math.log(2.0)
# Exponential: the fitted rate at the deepest depth is at least this fraction of the rate at the
# shallowest (a rate shrinking like 1/L would give L_min / L_max) ...
RATE_PERSISTENCE_MIN = 0.5
# ... and log ||g_l|| against l is a straight line at the deepest depth.
EXPONENTIAL_R2_MIN = 0.9
# Xiong et al. 2020, Theorem 1: the last layer's gradient scales as L^0 (Post-LN), L^-1/2 (Pre-LN).
XIONG_EXPONENT = {"postln": 0.0, "preln": -0.5}
# Feed-forward width d_ff = FFN_WIDTH_FACTOR * d_model (Vaswani et al. 2017).
FFN_WIDTH_FACTOR = 4
# Variants whose LayerNorms sit on the residual stream itself (every backward path crosses them).
STREAM_LN_VARIANTS = ("postln", "deepnorm")


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line y = a + b x: returns (slope b, intercept a, R^2); x, y (n,)."""
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / total if total > 0 else 1.0
    return float(b), float(a), r2


class _ContractingHighway(nn.Module):
    """x <- g x + a1 Attn(x); x <- g x + a2 FFN(x), around a zoo ReZero block (a1 = a2 = 0 at
    initialisation); x: (B, T, d_model)."""

    def __init__(self, block: nn.Module, gain: float):
        super().__init__()
        self.block = block
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        x = self.gain * x + b.alpha_attn * b.attn(x)
        return self.gain * x + b.alpha_ffn * b.ffn(x)


def _ln_transformer(variant: str, depth: int, setting: Mapping[str, Any]) -> nn.Module:
    """A zoo transformer LM at initialisation (draws from torch's global generator)."""
    sizes = dict(
        depth=depth,
        d_model=setting["d_model"],
        n_heads=setting["n_heads"],
        d_ff=FFN_WIDTH_FACTOR * setting["d_model"],
        seq_len=setting["seq_len"],
        vocab=setting["vocab"],
        causal=setting["causal"],
    )
    if variant in LN_MODELS:
        return create_model(LN_MODELS[variant], **sizes)
    if variant == "contracting":
        model = create_model("transformer_rezero", **sizes)
        model.blocks = nn.ModuleList(_ContractingHighway(b, CONTRACTING_GAIN) for b in model.blocks)
        return model
    raise ValueError(f"unknown variant {variant!r}; choose one of {LN_VARIANTS}")


def _ffn_out_weight(block: nn.Module) -> torch.Tensor:
    """W2 of the block's feed-forward sublayer (Xiong et al.'s W^{2,l})."""
    return next(p for name, p in block.named_parameters() if name.endswith("ffn.fc2.weight"))


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy summed over examples and positions: logits (B, T, V), targets (B, T)."""
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")


def _log_or_minus_inf(value: float) -> float:
    """log(value), -inf for 0 (a parameter that receives no gradient, as in a ReZero block at init)."""
    return math.log(value) if value > 0 else -math.inf


def _per_example_log_norm(g: torch.Tensor) -> float:
    """Mean over examples of log ||g_b||: g (B, ...) -> float (the probe's convention)."""
    return float(g.flatten(1).norm(dim=1).log().mean())


def _transformer_gradients(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> dict:
    """One backward pass of the LM loss through a zoo transformer's chain.

    Returns ``stream`` (L + 1,): log ||dE/dx_l|| at the residual stream x_0 (embedding output) ..
    x_L (input of the head); ``w2`` (L,): log ||dE/dW2_l||_F of each block's FFN output weight;
    ``ln`` (number of block LayerNorms,): log ||dE/d LN input|| - log ||dE/d LN output||, the
    LayerNorm Jacobian's gain on the backward signal.
    """
    steps = Chain.from_module(model).steps
    norms: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep(module, inputs, output):
        inputs[0].retain_grad()
        output.retain_grad()
        norms.append((inputs[0], output))

    hooks = [m.register_forward_hook(keep) for name, m in model.blocks.named_modules() if isinstance(m, nn.LayerNorm)]
    try:
        x = steps[0](ids)
        states = []
        for step in steps[1:-1]:
            x.retain_grad()
            states.append(x)
            x = step(x)
        x.retain_grad()
        states.append(x)
        _lm_loss(steps[-1](x), targets).backward()
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "stream": [_per_example_log_norm(s.grad) for s in states],
        "w2": [_log_or_minus_inf(float(_ffn_out_weight(b).grad.norm())) for b in model.blocks],
        "ln": [_per_example_log_norm(i.grad) - _per_example_log_norm(o.grad) for i, o in norms],
    }


def _decay_fit(stream: np.ndarray) -> dict:
    """Straight-line fit of a log-gradient profile (L + 1,) against the layer index l = 0..L.

    ``rate``: the slope (log-gradient gained per block toward the output, i.e. lost per block
    toward the input); ``r2``; ``decay``: log ||g_L|| - log ||g_0||.
    """
    rate, _, r2 = _line_fit(np.arange(len(stream), dtype=float), stream)
    return {"rate": rate, "r2": r2, "decay": float(stream[-1] - stream[0])}


def _measure_ln(setting: Mapping[str, Any], seed: int) -> dict:
    """Per-layer gradient norms of transformer LMs at initialisation, for every variant and depth.

    ``variants[v][str(L)]``: ``stream``/``w2`` the seed-averaged profiles, ``ln_gain`` the mean
    LayerNorm log gain per block (None without LayerNorm), ``fit`` of the stream profile, and
    ``w2_last`` the last block's log ||dE/dW2||. ``xiong[v]``: exponent of ||dE/dW2_L|| in L.
    """
    variants = list(dict.fromkeys([setting["variant"], *setting["compare"]]))
    out: dict[str, dict] = {}
    for variant in variants:
        per_depth = {}
        for depth in setting["depths"]:
            runs = []
            for run_seed in run_seeds(seed, setting["seeds"]):
                torch.manual_seed(run_seed)
                model = _ln_transformer(variant, depth, setting)
                g = torch.Generator().manual_seed(run_seed)
                shape = (setting["batch"], setting["seq_len"])
                ids = torch.randint(0, setting["vocab"], shape, generator=g)
                targets = torch.randint(0, setting["vocab"], shape, generator=g)
                runs.append(_transformer_gradients(model, ids, targets))
            stream = np.mean([r["stream"] for r in runs], axis=0)
            w2 = np.mean([r["w2"] for r in runs], axis=0)
            ln = [v for r in runs for v in r["ln"]]
            per_depth[str(depth)] = {
                "stream": stream.tolist(),
                "w2": w2.tolist(),
                "w2_last": float(w2[-1]),
                "ln_gain_per_block": 2 * float(np.mean(ln)) if ln else None,
                "fit": _decay_fit(stream),
            }
        out[variant] = per_depth
    return {"variants": out, "xiong_exponent": {v: _depth_exponent(by) for v, by in out.items()}}


def _depth_exponent(by_depth: Mapping[str, Any]) -> float | None:
    """Exponent p of ||dE/dW2|| of the last block ~ L^p (least squares in log-log); None when the
    last block gets no gradient or there is a single depth."""
    depths = sorted(by_depth, key=int)
    last = np.array([by_depth[d]["w2_last"] for d in depths])
    if len(depths) < 2 or not np.all(np.isfinite(last)):
        return None
    return _line_fit(np.log(np.asarray(depths, dtype=float)), last)[0]


def _decay_kind(by_depth: Mapping[str, Any]) -> tuple[str, str]:
    """Classify a variant's stream-gradient profiles over depths: "exponential", "subexponential"
    or "none", with a sentence of the numbers."""
    depths = sorted(by_depth, key=int)
    fits = [by_depth[d]["fit"] for d in depths]
    deep, shallow = fits[-1], fits[0]
    rates = ", ".join(f"L={d}: {f['rate']:+.3f}" for d, f in zip(depths, fits))
    numbers = f"fitted rate per block {rates}; at L={depths[-1]} log(||g_L||/||g_0||) = {deep['decay']:+.2f}, R^2 = {deep['r2']:.2f}"
    if all(f["decay"] < DECAY_MIN_LOG for f in fits):
        return "none", numbers
    persistent = shallow["rate"] > 0 and deep["rate"] >= RATE_PERSISTENCE_MIN * shallow["rate"]
    if persistent and deep["r2"] >= EXPONENTIAL_R2_MIN and all(f["rate"] > 0 for f in fits):
        return "exponential", numbers
    return "subexponential", numbers


def _ln_context(m: Mapping[str, Any], variant: str) -> str:
    """The mechanism (for LayerNorm on the stream) and Xiong et al.'s scaling, as clauses each led by "; "."""
    by = m["variants"][variant]
    deep = by[max(by, key=int)]
    parts = []
    if variant in STREAM_LN_VARIANTS:
        block_gain = -float(np.mean(np.diff(deep["stream"])))
        ln_gain = deep["ln_gain_per_block"]
        parts.append(
            f"per block the two LayerNorm Jacobians change the backward signal by {ln_gain:+.2f} (log), the whole block by "
            f"{block_gain:+.2f}, so the residual sums (I + J_F)^T give back {block_gain - ln_gain:+.2f}"
        )
    xi = ", ".join(
        f"{v} {e:+.2f}" + (f" (Xiong et al.: {XIONG_EXPONENT[v]:+.1f})" if v in XIONG_EXPONENT else "")
        for v, e in m["xiong_exponent"].items()
        if e is not None
    )
    if xi:
        parts.append(f"the last block's ||dE/dW2|| scales as L^p with p: {xi}")
    return "".join("; " + p for p in parts)


def _plot_ln(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    variant = setting["variant"]
    for d, v in sorted(m["variants"][variant].items(), key=lambda kv: int(kv[0])):
        stream = np.asarray(v["stream"])
        ax.plot(np.arange(len(stream)) / (len(stream) - 1), stream - stream[-1], label=f"L = {d}")
    ax.set_xlabel("layer l / L (0 = input)")
    ax.set_ylabel("log ||∂E/∂x_l|| − log ||∂E/∂x_L||")
    ax.set_title(f"{variant} at initialisation")
    ax.legend(fontsize=7)
    depths = np.asarray(setting["depths"], dtype=float)
    for name, by in m["variants"].items():
        p = m["xiong_exponent"][name]
        if p is None:
            continue
        last = np.array([by[str(int(d))]["w2_last"] for d in depths])
        bx.plot(depths, np.exp(last), "o-", label=f"{name} (p = {p:+.2f})")
    if bx.lines:
        bx.legend(fontsize=7)
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xticks(depths, [f"{d:g}" for d in depths])
    bx.xaxis.set_minor_locator(NullLocator())
    bx.set_xlabel("depth L")
    bx.set_ylabel("||∂E/∂W2|| of the last block")
    return fig


_LN_REFERENCES = (
    "Xiong et al. 2020, On layer normalization in the transformer architecture (Theorem 1)",
    "Liu et al. 2020, Understanding the difficulty of training transformers (Admin)",
    "Wang et al. 2022, DeepNet: scaling transformers to 1,000 layers",
)
_LN_PRESETS = {
    "tiny": {
        "depths": [2, 4],
        "seeds": 2,
        "d_model": 16,
        "n_heads": 2,
        "seq_len": 8,
        "vocab": 11,
        "batch": 2,
        "causal": True,
    },
    "quick": {
        "depths": [6, 12, 24, 48],
        "seeds": 3,
        "d_model": 64,
        "n_heads": 4,
        "seq_len": 32,
        "vocab": 64,
        "batch": 4,
        "causal": True,
    },
    "full": {
        "depths": [6, 12, 24, 48, 96],
        "seeds": 5,
        "d_model": 256,
        "n_heads": 8,
        "seq_len": 64,
        "vocab": 256,
        "batch": 4,
        "causal": True,
    },
}
_LN_CRITERION = (
    "the stream gradient profile log ||dE/dx_l|| (l = 0..L, autograd, mean over seeds) is fitted by a line in l at "
    f"each depth: 'exponential' = log(||g_L||/||g_0||) >= log 2 at the deepest L, positive rate at every L, rate at "
    f"the deepest L >= {RATE_PERSISTENCE_MIN} x the rate at the shallowest, and R^2 >= {EXPONENTIAL_R2_MIN}; "
    "'none' = log(||g_L||/||g_0||) < log 2 at the deepest L; otherwise 'subexponential'"
)
