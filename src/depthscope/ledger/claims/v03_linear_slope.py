"""Claim V3 (seed 003): linear activation of slope 1.5 gives factors 1.5^10 ~ 57 and 1.5^20 ~ 3325."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, _build, _relative_gap

V3_CLAIMED = {10: 57.0, 20: 3325.0}  # the claim's figures
V3_CLAIM_RTOL = 0.02  # "~": 1.5^10 = 57.67 is quoted as 57
V3_CLOSED_FORM_RTOL = 1e-12


def _measure_v3(setting: Mapping[str, Any], seed: int) -> dict:
    """Linear towers (slope a, upper weights 1) of depth 1..max_depth: |d f_L / d w_1| / |x| by autograd
    (x, w_1 ~ N(0, 1)) against the closed form a^L."""
    gen = torch.Generator().manual_seed(seed)
    a = setting["slope"]
    depths = list(range(1, setting["max_depth"] + 1))
    factors, closed, rel = [], [], []
    for depth in depths:
        x, w1 = torch.randn(2, generator=gen, dtype=torch.float64).tolist()
        tower = _build("scalar_tower", 0, depth=depth, weights=[w1] + [1.0] * (depth - 1), activation="linear", slope=a)
        xt = torch.tensor([[x]], dtype=torch.float64)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(tower(xt).sum(), tower.layers[0].w)
        factors.append(float(grad) / x)
        closed.append(a**depth)
        rel.append(_relative_gap(factors[-1], closed[-1]))
    at = {str(L): factors[L - 1] for L in V3_CLAIMED if L <= len(factors)}
    return {
        "depths": depths,
        "factors": factors,
        "closed_form": closed,
        "max_closed_form_rel_err": max(rel),
        "factor_at": at,
    }


def _judge_v3(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    a = setting["slope"]
    if m["max_closed_form_rel_err"] > V3_CLOSED_FORM_RTOL:
        return refuted(f"autograd's factor differs from a^L by {m['max_closed_form_rel_err']:.3g} (relative)")
    missing = [L for L in V3_CLAIMED if str(L) not in m["factor_at"]]
    if missing:
        return refuted(f"max_depth {setting['max_depth']} does not reach the claimed depths {missing}")
    off = {L: m["factor_at"][str(L)] / c - 1 for L, c in V3_CLAIMED.items()}
    text = ", ".join(f"L={L}: {m['factor_at'][str(L)]:.6g} vs {c:g}" for L, c in V3_CLAIMED.items())
    if max(abs(v) for v in off.values()) > V3_CLAIM_RTOL:
        return refuted(f"with slope {a:g} the measured factors are {text}, off by more than {V3_CLAIM_RTOL:.0%}")
    return confirmed(
        f"autograd through linear towers of slope {a:g} gives {text} (within {max(abs(v) for v in off.values()):.2%}); "
        f"every depth matches a^L to {m['max_closed_form_rel_err']:.2g}"
    )


def _plot_v3(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(m["depths"], np.abs(m["factors"]), "o", ms=4, label="autograd |∂f/∂w_1| / |x|")
    ax.semilogy(m["depths"], m["closed_form"], "k-", lw=1, label=f"{setting['slope']:g}^L")
    ax.semilogy(list(V3_CLAIMED), list(V3_CLAIMED.values()), "r*", ms=10, label="claimed")
    ax.set_xlabel("depth L")
    ax.set_ylabel("gradient factor")
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="V3",
    statement="Linear activation a = 1.5: factor 1.5^10 ~ 57, 1.5^20 ~ 3325.",
    source=SOURCE,
    expected="autograd through a linear tower of slope 1.5 gives d f / d w_1 = x 1.5^L: 57.67 x at L = 10 and "
    "3325.26 x at L = 20",
    refuted_if=f"the measured factor at L = 10 or 20 differs from 57 or 3325 by more than {V3_CLAIM_RTOL:.0%}, "
    f"or any depth's factor differs from a^L by more than {V3_CLOSED_FORM_RTOL:g}",
    presets={
        "tiny": {"slope": 1.5, "max_depth": 20},
        "quick": {"slope": 1.5, "max_depth": 30},
        "full": {"slope": 1.5, "max_depth": 60},
    },
    measure=_measure_v3,
    judge=_judge_v3,
    plot=_plot_v3,
    counterexample={"slope": 1.0},
)
