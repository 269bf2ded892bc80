"""Claim R2 (seed 000): Delta-learning on a physical system, E_lo + learned (E_hi - E_lo) against learned E_hi.

The system (silver clusters, the Gupta energy E_hi and its pairwise baseline E_lo, descriptors and
kernel ridge) lives in `_clusters`. rho_ref, the reference density of the pairwise baseline, is the
mean atomic density of the training clusters (geometry only, no E_hi needed): the pair potential
fitted to the clusters' typical environment.

The displacement scale of the geometries ("jitter") sets the regime: near equilibrium (small
jitter) E_hi varies little, hot geometries (larger jitter) put the steep pair repulsion, which the
baseline carries exactly, into the variation.

Regressor: kernel ridge regression with a sum-over-atoms Gaussian kernel on per-atom radial
descriptors, its length scale and ridge picked from fixed grids on a validation split, separately
and identically for both targets. Learning curves are averaged over random orders of the training
pool.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthscope.ledger._experiment import Experiment, Judgement, confirmed, qualified, refuted
from depthscope.ledger.claims._clusters import (
    RIDGE_GRID,
    SEPARATION,
    additivity_gap,
    atom_descriptors,
    energy_delta,
    energy_hi,
    energy_lo,
    extensive_slope,
    kernel_ridge,
    mean_density,
    mean_gradient_norm,
    median_length,
    random_clusters,
    rkhs_norm,
    sum_kernels,
)

LENGTH_SCALE_GRID = (0.5, 1.0, 2.0, 4.0)  # multiples of the median descriptor distance
NORM_LENGTH_SCALE = 1.0  # the grid entry whose kernel measures the norms of E_hi and the residual
SAMPLE_GAIN_MIN = 1.25  # "fewer samples": delta needs at most 1/1.25 of the direct model's samples
ADDITIVITY_ROUNDING = 1e-12  # relative gap allowed for "additive to rounding"
EXTENSIVE_SLOPE_MAX = 1.5  # log-log slope of the total residual against N: 1 extensive, 2 all-pairs; cut halfway


def samples_to_reach(sizes: list[int], errors: list[float], target: float) -> float:
    """Training-set size at which the learning curve (sizes, errors) first reaches ``target``.

    The curve is made non-increasing (running minimum) and read piecewise linearly in log-log
    coordinates between measured sizes; nothing is extrapolated. Returns ``sizes[0]`` when the
    first point already reaches the target (the true size is then at most that) and inf when
    no measured point does.
    """
    n = np.log(np.asarray(sizes, dtype=float))
    e = np.log(np.minimum.accumulate(np.asarray(errors, dtype=float)))
    t = math.log(target)
    if e[0] <= t:
        return float(sizes[0])
    for k in range(len(n) - 1):
        if e[k + 1] <= t:
            return float(math.exp(n[k] + (t - e[k]) * (n[k + 1] - n[k]) / (e[k + 1] - e[k])))
    return math.inf


def sample_gains(sizes: list[int], direct: list[float], delta: list[float]) -> tuple[list[float], list[bool]]:
    """For each direct-learning point after the first: n / (samples delta-learning needs for the
    same test error), and whether that number is only a lower bound (delta's first point already
    did better). A gain below 1 means delta-learning needs more samples; 0 that it never got there."""
    gains, lower_bounds = [], []
    for n, err in zip(sizes[1:], direct[1:]):
        needed = samples_to_reach(sizes, delta, err)
        gains.append(n / needed)
        lower_bounds.append(needed == sizes[0] and delta[0] < err)
    return gains, lower_bounds


def _learning_curve(
    kernels: np.ndarray, y: np.ndarray, split: Mapping[str, slice], sizes: list[int], order: np.ndarray
) -> tuple[list[float], list[int]]:
    """Test MAE per training size, each with the (length scale, ridge) that did best on validation.

    kernels: (n_lengths, n_pool, n_train_max) between the pool (train, validation, test rows) and
    the training rows; y: (n_pool,); the training set of size n is ``order[:n]`` (nested sets).
    Returns the test MAEs and the chosen length indices.
    """
    va, te = split["val"], split["test"]
    errors, chosen = [], []
    for n in sizes:
        rows = order[:n]
        best = None
        for k, ridge in itertools.product(range(len(kernels)), RIDGE_GRID):
            c, mean = kernel_ridge(kernels[k][np.ix_(rows, rows)], y[rows], ridge)
            val = np.mean(np.abs(kernels[k, va][:, rows] @ c + mean - y[va]))
            if best is None or val < best[0]:
                best = (val, k, c, mean)
        _, k, c, mean = best
        errors.append(float(np.mean(np.abs(kernels[k, te][:, rows] @ c + mean - y[te]))))
        chosen.append(k)
    return errors, chosen


def _mean_learning_curves(
    kernels: np.ndarray,
    targets: Mapping[str, np.ndarray],
    split: Mapping[str, slice],
    sizes: list[int],
    repeats: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, list]]:
    """Learning curves of every target, averaged over ``repeats`` random orders of the training
    pool (the same orders for every target). Per target: mean test MAE per size and the length
    scale chosen per size and repeat."""
    orders = [rng.permutation(max(sizes)) for _ in range(repeats)]
    out = {}
    for name, y in targets.items():
        runs = [_learning_curve(kernels, y, split, sizes, order) for order in orders]
        out[name] = {
            "mae": np.mean([errors for errors, _ in runs], axis=0).tolist(),
            "length_scale": [[LENGTH_SCALE_GRID[k] for k in chosen] for _, chosen in runs],
        }
    return out


def _regime(setting: Mapping[str, Any], jitter: float, rng: np.random.Generator) -> dict:
    """One geometry regime: learning curves of E_hi learned directly and as E_lo + learned
    (E_hi - E_lo), norms, gradient norms and size-extensivity of E_hi and the residual."""
    baseline = setting["baseline"]
    n_train, n_val, n_test = max(setting["sizes"]), setting["n_val"], setting["n_test"]
    x = random_clusters(n_train + n_val + n_test, setting["n_atoms"], jitter, rng)
    xt = torch.tensor(x, dtype=torch.float64)
    split = {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val), "test": slice(n_train + n_val, None)}
    rho_ref = mean_density(xt[split["train"]])
    e_hi, e_lo = energy_hi(xt).numpy(), energy_lo(xt, rho_ref, baseline).numpy()
    e_delta = e_hi - e_lo

    desc = atom_descriptors(x)
    median = median_length(desc[split["train"]], rng)
    kernels = sum_kernels(desc, desc[split["train"]], [g * median for g in LENGTH_SCALE_GRID])
    curves = _mean_learning_curves(
        kernels, {"direct": e_hi, "delta": e_delta}, split, setting["sizes"], setting["repeats"], rng
    )
    direct_err, delta_err = curves["direct"]["mae"], curves["delta"]["mae"]
    gains, lower_bounds = sample_gains(setting["sizes"], direct_err, delta_err)

    k_full = kernels[LENGTH_SCALE_GRID.index(NORM_LENGTH_SCALE), split["train"]]
    c_hi, _ = kernel_ridge(k_full, e_hi[split["train"]])
    c_delta, _ = kernel_ridge(k_full, e_delta[split["train"]])

    lo = lambda p: energy_lo(p, rho_ref, baseline)  # noqa: E731
    delta = lambda p: energy_delta(p, rho_ref, baseline)  # noqa: E731
    x_test = x[split["test"]]
    return {
        "jitter": jitter,
        "rho_ref": rho_ref,
        "direct_mae": direct_err,
        "delta_mae": delta_err,
        "direct_length_scale": curves["direct"]["length_scale"],
        "delta_length_scale": curves["delta"]["length_scale"],
        "sample_gain": gains,
        "sample_gain_is_lower_bound": lower_bounds,
        "std_hi": float(e_hi.std()),
        "std_delta": float(e_delta.std()),
        "rkhs_hi": rkhs_norm(k_full, c_hi),
        "rkhs_delta": rkhs_norm(k_full, c_delta),
        "grad_hi": mean_gradient_norm(energy_hi, x_test),
        "grad_delta": mean_gradient_norm(delta, x_test),
        "additivity_gap": {
            "hi": additivity_gap(energy_hi, x_test),
            "lo": additivity_gap(lo, x_test),
            "delta": additivity_gap(delta, x_test),
        },
        **_size_scaling(setting, jitter, delta, rng),
    }


def _measure_r2(setting: Mapping[str, Any], seed: int) -> dict:
    """Every geometry regime (``jitters``) with the same sizes, splits and regressor."""
    rng = np.random.default_rng(seed)
    return {"sizes": list(setting["sizes"]), "regimes": [_regime(setting, j, rng) for j in setting["jitters"]]}


def _size_scaling(setting: Mapping[str, Any], jitter: float, delta, rng: np.random.Generator) -> dict:
    """Mean per-atom E_hi and residual ``delta`` for clusters of each size in ``scaling_sizes``,
    and the log-log slopes of the mean totals against N."""
    hi, res = [], []
    for n in setting["scaling_sizes"]:
        xt = torch.tensor(random_clusters(setting["scaling_clusters"], n, jitter, rng), dtype=torch.float64)
        hi.append(float(energy_hi(xt).mean()) / n)
        res.append(float(delta(xt).mean()) / n)
    sizes = list(setting["scaling_sizes"])
    return {
        "scaling_sizes": sizes,
        "hi_per_atom": hi,
        "delta_per_atom": res,
        "delta_slope": extensive_slope(sizes, [d * n for d, n in zip(res, sizes)]),
        "hi_slope": extensive_slope(sizes, [h * n for h, n in zip(hi, sizes)]),
    }


def _parts(r: Mapping[str, Any], sizes: list[int]) -> dict[str, tuple[bool, str]]:
    """Each part of the claim in one regime r: (holds, the sentence with its numbers)."""
    gains = r["sample_gain"]
    gap = max(r["additivity_gap"].values())
    return {
        "fewer samples": (
            all(g >= SAMPLE_GAIN_MIN for g in gains),
            "samples needed direct / delta for the direct model's test error at n = "
            + ", ".join(
                f"{n}: " + ("not reached" if g == 0 else f"{'>= ' if low else ''}{g:.3g}x")
                for n, g, low in zip(sizes[1:], gains, r["sample_gain_is_lower_bound"])
            )
            + f" (test MAE at n = {sizes[-1]}: direct {r['direct_mae'][-1]:.3g} eV, delta {r['delta_mae'][-1]:.3g} eV)",
        ),
        "smaller norm": (
            r["std_delta"] < r["std_hi"] and r["rkhs_delta"] < r["rkhs_hi"],
            f"std over clusters {r['std_delta']:.3g} vs {r['std_hi']:.3g} eV, kernel norm of the fit "
            f"{r['rkhs_delta']:.3g} vs {r['rkhs_hi']:.3g}",
        ),
        "smoother": (
            r["grad_delta"] < r["grad_hi"],
            f"mean ||dE/dR|| {r['grad_delta']:.3g} vs {r['grad_hi']:.3g} eV/A",
        ),
        "size-extensive": (
            gap <= ADDITIVITY_ROUNDING and r["delta_slope"] <= EXTENSIVE_SLOPE_MAX,
            f"halves {SEPARATION:g} r0 apart add up to a relative gap of {gap:.1e}; the total residual grows like "
            f"N^{r['delta_slope']:.2f} (E_hi: N^{r['hi_slope']:.2f}), per atom "
            + ", ".join(f"N={n}: {d:.3g}" for n, d in zip(r["scaling_sizes"], r["delta_per_atom"]))
            + " eV",
        ),
    }


def _judge_r2(m: Mapping[str, Any], setting: Mapping[str, Any]) -> Judgement:
    sizes = m["sizes"]
    details, failed = [], []
    for r in m["regimes"]:
        parts = _parts(r, sizes)
        details.append(
            f"[jitter {r['jitter']:g} r0] " + "; ".join(f"{name}: {text}" for name, (_, text) in parts.items())
        )
        failed += [f"{name} (jitter {r['jitter']:g} r0)" for name, (ok, _) in parts.items() if not ok]
    text = " ".join(details)
    short = [
        (r["jitter"], n, g) for r in m["regimes"] for n, g in zip(sizes[1:], r["sample_gain"]) if g < SAMPLE_GAIN_MIN
    ]
    if not any(g >= SAMPLE_GAIN_MIN for r in m["regimes"] for g in r["sample_gain"]):
        return refuted(
            f"with the {setting['baseline']} baseline, delta-learning never reaches the direct model's error with "
            f"{SAMPLE_GAIN_MIN}x fewer samples, in any regime. {text}"
        )
    if failed:
        where = ""
        if short:
            where = (
                " (sample gain below "
                + f"{SAMPLE_GAIN_MIN}x at "
                + ", ".join(
                    f"jitter {j:g} n = {n}: " + ("never reached" if g == 0 else f"{g:.3g}x") for j, n, g in short
                )
                + ")"
            )
        return qualified(f"every part holds except: {', '.join(failed)}{where}. {text}")
    return confirmed(f"every part holds in every regime. {text}")


def _plot_r2(m: Mapping[str, Any], setting: Mapping[str, Any]):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (ax_curve, ax_size) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in m["regimes"]:
        tag = f"jitter {r['jitter']:g}"
        (line,) = ax_curve.plot(m["sizes"], r["direct_mae"], "o-", label=f"E_hi directly, {tag}")
        ax_curve.plot(m["sizes"], r["delta_mae"], "s--", color=line.get_color(), label=f"E_lo + Δ, {tag}")
        sizes = r["scaling_sizes"]
        (line,) = ax_size.plot(sizes, np.abs(r["hi_per_atom"]), "o-", label=f"|E_hi| / N, {tag}")
        ax_size.plot(sizes, np.abs(r["delta_per_atom"]), "s--", color=line.get_color(), label=f"|Δ| / N, {tag}")
    for ax, ticks in ((ax_curve, m["sizes"]), (ax_size, m["regimes"][0]["scaling_sizes"])):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax_curve.set_xlabel("training clusters")
    ax_curve.set_ylabel("test MAE of E_hi (eV)")
    ax_curve.legend(fontsize=7)
    ax_size.set_xlabel("atoms N")
    ax_size.set_ylabel("energy per atom (eV)")
    ax_size.legend(fontsize=7)
    return fig


EXPERIMENT = Experiment(
    id="R2",
    statement=(
        "Delta-learning: learning a residual over a cheap baseline (E_hi - E_lo) needs fewer samples than "
        "learning E_hi directly; the residual has smaller norm, is smoother, and stays size-extensive."
    ),
    source="000",
    expected=(
        "for silver clusters with E_hi = Gupta many-body energy and E_lo = its pairwise (tangent) approximation, "
        "kernel ridge reaches the direct model's test error at every training size after the first with at "
        f"least {SAMPLE_GAIN_MIN}x fewer clusters when it learns E_hi - E_lo, in every geometry regime; the "
        "residual has a smaller std and kernel norm, a smaller mean coordinate-gradient norm, adds up over "
        f"far-apart halves to rounding and its total grows no faster than N^{EXTENSIVE_SLOPE_MAX}"
    ),
    refuted_if=(
        f"in no regime and at no training size does delta-learning reach the direct model's test error with "
        f"{SAMPLE_GAIN_MIN}x fewer samples; qualified if it does only in some regimes or at some sizes, or if "
        "the residual is not smaller in std and kernel norm, not smoother, not additive to "
        f"{ADDITIVITY_ROUNDING:g} relative, or grows faster than N^{EXTENSIVE_SLOPE_MAX}"
    ),
    presets={
        "tiny": {
            "n_atoms": 6,
            "jitters": [0.1],
            "sizes": [8, 16, 32, 64],
            "n_val": 40,
            "n_test": 60,
            "repeats": 2,
            "baseline": "pairwise",
            "scaling_sizes": [4, 8, 16],
            "scaling_clusters": 10,
        },
        "quick": {
            "n_atoms": 10,
            "jitters": [0.05, 0.1],
            "sizes": [8, 16, 32, 64, 128, 256, 512],
            "n_val": 150,
            "n_test": 300,
            "repeats": 3,
            "baseline": "pairwise",
            "scaling_sizes": [4, 8, 16, 32, 64],
            "scaling_clusters": 50,
        },
        "full": {
            "n_atoms": 13,
            "jitters": [0.05, 0.1],
            "sizes": [8, 16, 32, 64, 128, 256, 512, 1024, 2048],
            "n_val": 300,
            "n_test": 1000,
            "repeats": 3,
            "baseline": "pairwise",
            "scaling_sizes": [4, 8, 16, 32, 64, 128],
            "scaling_clusters": 200,
        },
    },
    measure=_measure_r2,
    judge=_judge_r2,
    plot=_plot_r2,
    counterexample={"baseline": "negated"},
    references=(
        "Ramakrishnan et al. 2015, 'Big data meets quantum chemistry approximations: the Delta-machine "
        "learning approach' (J. Chem. Theory Comput.)",
        "Cleri & Rosato 1993, 'Tight-binding potentials for transition metals and alloys' (Phys. Rev. B 48, 22)",
    ),
)
