"""Claim V8 (seed 003): orthogonal W with a derivative-1 activation is an isometry (dynamical isometry)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.chain import Chain
from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._vanishing_common import SOURCE, _blocks_of, _build, _child_seed, _jacobian

V8_ISOMETRY_TOL = 1e-10  # |sigma_i - 1|, float64
V8_MOMENT_RTOL = 0.25  # agreement with the published variances
V8_ZERO_TOL = 1e-10  # a published variance of 0 is matched below this
# Pennington, Schoenholz & Ganguli 2017 at criticality (mean squared singular value 1), N >> L: the
# variance of the spectrum of J J^T is L times the sum over a layer's factors of their normalised
# variances (free multiplicative convolution): W W^T contributes 1 (Gaussian) or 0 (orthogonal),
# D^2 contributes 1 for ReLU (half the units active) and 0 for a linear activation.
V8_SYSTEMS = {
    "linear-gaussian": {"activation": "linear", "init": "gaussian", "sigma_w": 1.0, "variance_per_layer": 1.0},
    "relu-gaussian": {"activation": "relu", "init": "gaussian", "sigma_w": math.sqrt(2.0), "variance_per_layer": 2.0},
    "linear-orthogonal": {"activation": "linear", "init": "orthogonal", "sigma_w": 1.0, "variance_per_layer": 0.0},
}


def _squared_singular_moments(
    system: Mapping[str, Any], depth: int, width: int, seed: int, gen: torch.Generator
) -> tuple[float, float]:
    """(m1, sigma^2 / m1^2): the mean and the normalised variance of the eigenvalues of J J^T, J: (width, width)
    the input-output Jacobian of ``depth`` plain-MLP blocks (no bias) at an input x ~ N(0, I).

    At criticality m1 = 1 and the normalised variance is the variance Pennington et al. state; dividing
    by m1^2 removes the finite-width scatter of the overall scale (the free-probability result fixes
    sigma^2 / m1^2 whatever m1 is).
    """
    model = _build(
        "plain_mlp",
        seed,
        depth=depth,
        width=width,
        activation=system["activation"],
        init=system["init"],
        sigma_w=system["sigma_w"],
        out_dim=width,
    )
    blocks, _ = _blocks_of(model)
    J = _jacobian(blocks, torch.randn(width, generator=gen, dtype=torch.float64))
    ev = torch.linalg.eigvalsh(J @ J.T)
    m1 = float(ev.mean())
    return m1, (float((ev**2).mean()) - m1**2) / m1**2


def _measure_v8(setting: Mapping[str, Any], seed: int) -> dict:
    """The isometry check: singular values of a deep linear network with ``isometry_init`` weights (slope-1
    activation, float64). The comparison: mean and normalised variance of the squared singular values for
    each of V8_SYSTEMS and depth, averaged over seeds."""
    gen = torch.Generator().manual_seed(seed)
    n = setting["width"]
    iso = _build(
        "deep_linear", _child_seed(gen), depth=setting["isometry_depth"], width=n, init=setting["isometry_init"]
    )
    s = torch.linalg.svdvals(_jacobian(Chain.from_module(iso), torch.randn(n, generator=gen, dtype=torch.float64)))
    moments = {}
    for name, system in V8_SYSTEMS.items():
        rows = []
        for depth in setting["depths"]:
            pairs = [
                _squared_singular_moments(system, depth, n, _child_seed(gen), gen) for _ in range(setting["seeds"])
            ]
            rows.append(
                {
                    "depth": depth,
                    "mean": float(np.mean([p[0] for p in pairs])),
                    "variance": float(np.mean([p[1] for p in pairs])),
                    "variance_seeds": [p[1] for p in pairs],
                    "published": system["variance_per_layer"] * depth,
                }
            )
        moments[name] = rows
    return {
        "isometry_max_dev": float((s - 1).abs().max()),
        "isometry_sigma_range": [float(s.min()), float(s.max())],
        "moments": moments,
    }


def _moment_mismatches(m: Mapping[str, Any]) -> list[str]:
    """The (system, depth) pairs whose variance misses the published one, as text."""
    bad = []
    for name, rows in m["moments"].items():
        for r in rows:
            pub, var = r["published"], r["variance"]
            miss = abs(var) > V8_ZERO_TOL if pub == 0 else abs(var - pub) > V8_MOMENT_RTOL * pub
            if miss:
                bad.append(f"{name} L={r['depth']}: {var:.3g} vs {pub:g}")
    return bad


def _judge_v8(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    lo, hi = m["isometry_sigma_range"]
    iso = f"{setting['isometry_init']} depth-{setting['isometry_depth']} linear chain, width {setting['width']}"
    if m["isometry_max_dev"] > V8_ISOMETRY_TOL:
        return refuted(f"the {iso} is not an isometry: singular values span {lo:.4g}..{hi:.4g}")
    deepest = {name: rows[-1] for name, rows in m["moments"].items()}
    table = "; ".join(
        f"{name} L={r['depth']}: var {r['variance']:.3g} vs {r['published']:g}" for name, r in deepest.items()
    )
    bad = _moment_mismatches(m)
    if bad:
        return qualified(
            f"the {iso} is an isometry (|sigma - 1| <= {m['isometry_max_dev']:.1g}), but the measured variances of "
            f"the squared singular values miss Pennington et al.'s by more than {V8_MOMENT_RTOL:.0%}: {'; '.join(bad)}"
        )
    return confirmed(
        f"the {iso} is an isometry (|sigma - 1| <= {m['isometry_max_dev']:.1g}); the variance of the squared "
        f"singular values matches Pennington et al. 2017 within {V8_MOMENT_RTOL:.0%} at every depth ({table})"
    )


def _plot_v8(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (name, rows) in enumerate(m["moments"].items()):
        depths = [r["depth"] for r in rows]
        ax.plot(depths, [r["variance"] for r in rows], "o", color=f"C{i}", label=f"{name} (measured)")
        ax.plot(depths, [r["published"] for r in rows], "-", color=f"C{i}", lw=1)
    ax.set_xlabel("depth L")
    ax.set_ylabel("variance of squared singular values")
    ax.set_title("lines: Pennington et al. 2017 (L, 2L, 0)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="V8",
    statement="Orthogonal W with derivative-1 activation is an isometry: dynamical isometry, perfect propagation.",
    source=SOURCE,
    expected="every singular value of a deep orthogonal linear chain is 1 to 1e-10; the variance of the squared "
    "singular values is ~L (linear, Gaussian), ~2L (ReLU, Gaussian, sigma_w^2 = 2) and 0 (linear, orthogonal)",
    refuted_if=f"a singular value of the orthogonal, slope-1 chain differs from 1 by more than "
    f"{V8_ISOMETRY_TOL:g}; "
    f"qualified if a measured variance misses Pennington et al.'s value by more than {V8_MOMENT_RTOL:.0%}",
    presets={
        "tiny": {"width": 128, "depths": [2, 4], "seeds": 4, "isometry_depth": 16, "isometry_init": "orthogonal"},
        "quick": {
            "width": 256,
            "depths": [2, 4, 8, 16],
            "seeds": 4,
            "isometry_depth": 64,
            "isometry_init": "orthogonal",
        },
        "full": {
            "width": 512,
            "depths": [2, 4, 8, 16, 32],
            "seeds": 8,
            "isometry_depth": 256,
            "isometry_init": "orthogonal",
        },
    },
    measure=_measure_v8,
    judge=_judge_v8,
    plot=_plot_v8,
    counterexample={"isometry_init": "gaussian"},
    references=(
        "Pennington, Schoenholz & Ganguli 2017, Resurrecting the sigmoid in deep learning through dynamical "
        "isometry: variance of the squared singular values of the input-output Jacobian at criticality is L "
        "(linear, Gaussian), 2L (ReLU, Gaussian) and 0 (linear, orthogonal)",
        "Saxe, McClelland & Ganguli 2014: orthogonal initialisation makes deep linear networks isometric",
    ),
)
