"""Claim R5 (seed 000): a soft-thresholding residual has a dead zone where the block is exactly the identity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, refuted
from depthscope.ledger.claims._residual_common import _float64_model, _per_example_jacobian

# No tolerance: in its dead zone soft-thresholding returns +-0 with zero derivative, so y == x and
# J == I hold bit for bit; any deviation at all refutes.


@torch.no_grad()
def _set_tau(block: nn.Module, tau: float) -> None:
    """Give every channel of a shrinkage block the threshold ``tau`` (softplus(-inf) = 0 exactly)."""
    block.shrink.rho.fill_(math.log(math.expm1(tau)) if tau > 0 else -math.inf)


def _measure_r5(setting: Mapping[str, Any], seed: int) -> dict:
    """One zoo shrinkage_mlp block (float64), inputs x of log-spaced norms; for each threshold tau:
    which inputs have every branch entry |u_j| <= tau (the dead zone), and there the exact
    per-example exact Jacobian against I and y against x."""
    n, count = setting["width"], setting["inputs"]
    block = _float64_model("shrinkage_mlp", seed, depth=1, width=n).blocks[0]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, n, generator=g, dtype=torch.float64)
    radius = torch.logspace(
        math.log10(setting["radius"][0]), math.log10(setting["radius"][1]), count, dtype=torch.float64
    )
    x = z / z.norm(dim=1, keepdim=True) * radius[:, None]
    eye = torch.eye(n, dtype=torch.float64)
    rows = []
    for tau in setting["taus"]:
        _set_tau(block, tau)
        with torch.no_grad():
            inside = (block.branch(x).abs() <= tau).all(dim=1)
            moved = (block(x) - x).abs().amax(dim=1)
        deviation = (_per_example_jacobian(block, x).detach() - eye).abs().amax(dim=(1, 2))
        out = ~inside
        rows.append(
            {
                "tau": tau,
                "fraction_in_zone": float(inside.double().mean()),
                "in_zone": int(inside.sum()),
                "max_jacobian_deviation_in_zone": float(deviation[inside].max()) if inside.any() else 0.0,
                "max_move_in_zone": float(moved[inside].max()) if inside.any() else 0.0,
                "fraction_outside_not_identity": float((deviation[out] > 0).double().mean()) if out.any() else None,
                "largest_radius_in_zone": float(radius[inside].max()) if inside.any() else None,
            }
        )
    return {"rows": rows, "inputs": count, "radius": list(setting["radius"])}


def _judge_r5(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    rows = m["rows"]
    for r in rows:
        if r["max_jacobian_deviation_in_zone"] > 0 or r["max_move_in_zone"] > 0:
            return refuted(
                f"at tau = {r['tau']}, inside the dead zone max |J - I| = {r['max_jacobian_deviation_in_zone']:.3g} "
                f"and max |y - x| = {r['max_move_in_zone']:.3g}: the block is not exactly the identity there"
            )
    if not any(r["in_zone"] for r in rows):
        taus = ", ".join(str(r["tau"]) for r in rows)
        return refuted(
            f"no dead zone: none of {m['inputs']} inputs (norms {m['radius'][0]:g} to {m['radius'][1]:g}) had every "
            f"branch entry within the threshold at tau = {taus}"
        )
    total = sum(r["in_zone"] for r in rows)
    outside = [r["fraction_outside_not_identity"] for r in rows if r["fraction_outside_not_identity"] is not None]
    lo, hi = rows[0], rows[-1]
    sharp = (
        "every input outside it had J != I"
        if min(outside) == 1
        else f"outside it, {min(outside):.0%} or more had J != I"
    )
    return confirmed(
        f"{total} (input, tau) pairs lay in the dead zone, and for all of them y == x and J == I bit for bit "
        f"(exact Jacobian, float64); {sharp}. The zone holds {lo['fraction_in_zone']:.0%} of the inputs (norms log-spaced "
        f"{m['radius'][0]:g} to {m['radius'][1]:g}) at tau = {lo['tau']} and {hi['fraction_in_zone']:.0%} "
        f"at tau = {hi['tau']}"
    )


def _plot_r5(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    tau = [r["tau"] for r in m["rows"]]
    ax.plot(tau, [r["fraction_in_zone"] for r in m["rows"]], "o-", label="inputs in the dead zone (J = I exactly)")
    ax.plot(
        tau, [r["fraction_outside_not_identity"] or 0.0 for r in m["rows"]], "s--", label="outside: fraction with J ≠ I"
    )
    if min(tau) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("threshold τ")
    ax.set_ylabel("fraction")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    return fig


EXPERIMENT = Experiment(
    id="R5",
    statement="A soft-thresholding residual has a dead zone where the block is exactly the identity.",
    source="000",
    expected=(
        "a shrinkage_mlp block with threshold tau > 0 has inputs with every |branch entry| <= tau, and on "
        "every one of them y == x and the Jacobian == I exactly; the zone grows with tau"
    ),
    refuted_if=(
        "any input in the zone has y != x or J != I (any nonzero deviation, float64 exact Jacobian), or no input "
        "of norm down to the smallest radius falls in the zone at any threshold tested"
    ),
    presets={
        "tiny": {"width": 16, "inputs": 32, "radius": [0.01, 10.0], "taus": [0.1, 0.5, 2.0]},
        "quick": {"width": 32, "inputs": 200, "radius": [0.01, 10.0], "taus": [0.05, 0.1, 0.25, 0.5, 1.0, 2.0]},
        "full": {
            "width": 128,
            "inputs": 500,
            "radius": [0.01, 30.0],
            "taus": [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0],
        },
    },
    measure=_measure_r5,
    judge=_judge_r5,
    plot=_plot_r5,
    counterexample={"taus": [0.0]},
)
