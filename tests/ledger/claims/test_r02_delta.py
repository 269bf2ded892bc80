"""R2: reading sample counts off learning curves, the learning curves' model selection and averaging,
the tiny measurement's consistency and the judge's verdict branches."""

import math

import numpy as np
import pytest
from tests.ledger.claims.helpers import tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims._clusters import sum_kernels
from depthscope.ledger.claims.r02_delta import (
    ADDITIVITY_ROUNDING,
    _judge_r2,
    _learning_curve,
    _mean_learning_curves,
    _measure_r2,
    sample_gains,
    samples_to_reach,
)


def test_samples_to_reach_on_a_power_law_is_exact():
    sizes = [10, 20, 40, 80]
    errors = [n**-0.5 for n in sizes]
    assert samples_to_reach(sizes, errors, 30**-0.5) == pytest.approx(30.0)
    assert samples_to_reach(sizes, errors, 1.0) == 10.0  # already there at the first size
    assert samples_to_reach(sizes, errors, 0.01) == math.inf  # never within the curve


def test_samples_to_reach_uses_the_running_minimum():
    # the bump at 40 must not make 40 look like the first size below 0.2
    assert samples_to_reach([10, 20, 40, 80], [0.5, 0.15, 0.3, 0.1], 0.2) < 20


def test_sample_gains_of_a_curve_shifted_by_a_factor_four():
    sizes = [8, 16, 32, 64, 128]
    direct = [n**-0.5 for n in sizes]
    delta = [(4 * n) ** -0.5 for n in sizes]  # delta(n) = direct(4 n)
    gains, lower = sample_gains(sizes, direct, delta)
    # at n = 16 the direct error is reached by delta at n = 4 < 8: only the bound 16 / 8 = 2 is known
    assert gains[0] == pytest.approx(2.0) and lower[0]
    assert gains[1:] == [pytest.approx(4.0)] * 3 and not any(lower[1:])
    worse, _ = sample_gains(sizes, delta, direct)
    assert worse[-1] == 0.0  # never reached


def test_learning_curve_picks_by_validation_and_improves_with_data():
    rng = np.random.default_rng(9)
    z = rng.uniform(-1, 1, (260, 1, 1))
    y = np.sin(3 * z[:, 0, 0])
    split = {"train": slice(0, 160), "val": slice(160, 200), "test": slice(200, None)}
    kernels = sum_kernels(z, z[:160], [0.05, 0.3, 3.0])
    errors, chosen = _learning_curve(kernels, y, split, [5, 20, 160], np.arange(160))
    assert errors[2] < errors[0] / 10
    assert chosen[2] != 2  # the very wide kernel underfits a sine
    # the order picks the training rows: reversing it changes small sets, not the full one
    reversed_errors, _ = _learning_curve(kernels, y, split, [5, 160], np.arange(160)[::-1])
    assert reversed_errors[0] != errors[0] and reversed_errors[1] == pytest.approx(errors[2])


def test_mean_learning_curves_average_the_repeats():
    rng = np.random.default_rng(10)
    z = rng.uniform(-1, 1, (120, 1, 1))
    targets = {"a": np.sin(3 * z[:, 0, 0]), "b": np.cos(2 * z[:, 0, 0])}
    split = {"train": slice(0, 80), "val": slice(80, 100), "test": slice(100, None)}
    kernels = sum_kernels(z, z[:80], [0.1, 0.5])
    sizes = [10, 80]
    curves = _mean_learning_curves(kernels, targets, split, sizes, 3, np.random.default_rng(11))
    replay = np.random.default_rng(11)
    runs = [_learning_curve(kernels, targets["a"], split, sizes, replay.permutation(80))[0] for _ in range(3)]
    assert curves["a"]["mae"][0] == pytest.approx(np.mean([r[0] for r in runs]))
    assert len({r[0] for r in runs}) == 3  # the small sets differ between orders
    assert curves["a"]["mae"][1] == pytest.approx(runs[0][1])  # n = 80 is the whole pool in every order
    assert len(curves["a"]["length_scale"]) == 3 and set(curves) == {"a", "b"}


# --- the experiment ---------------------------------------------------------------------------


def test_measure_r2_tiny_is_deterministic_and_self_consistent():
    setting = tiny_setting("R2")
    a, b = _measure_r2(setting, 0), _measure_r2(setting, 0)
    assert a == b
    r = a["regimes"][0]
    assert len(r["sample_gain"]) == len(setting["sizes"]) - 1
    assert max(r["additivity_gap"].values()) < ADDITIVITY_ROUNDING
    assert r["std_delta"] > 0 and r["grad_delta"] > 0


def _regime(gains, std=(0.5, 2.0), grad=(1.0, 5.0), gap=1e-15, slope=1.1):
    return {
        "jitter": 0.1,
        "sample_gain": gains,
        "sample_gain_is_lower_bound": [False] * len(gains),
        "direct_mae": [1.0] * (len(gains) + 1),
        "delta_mae": [0.5] * (len(gains) + 1),
        "std_delta": std[0],
        "std_hi": std[1],
        "rkhs_delta": std[0],
        "rkhs_hi": std[1],
        "grad_delta": grad[0],
        "grad_hi": grad[1],
        "additivity_gap": {"hi": gap, "lo": gap, "delta": gap},
        "delta_slope": slope,
        "hi_slope": 1.0,
        "scaling_sizes": [4, 8],
        "delta_per_atom": [0.1, 0.1],
    }


def test_judge_r2_branches():
    s = {"baseline": "pairwise"}
    sizes = [8, 16, 32]
    assert _judge_r2({"sizes": sizes, "regimes": [_regime([3.0, 2.0])]}, s).verdict == ledger.CONFIRMED
    j = _judge_r2({"sizes": sizes, "regimes": [_regime([3.0, 1.1])]}, s)
    assert j.verdict == ledger.QUALIFIED and "n = 32: 1.1x" in j.reason
    j = _judge_r2({"sizes": sizes, "regimes": [_regime([3.0, 2.0], grad=(6.0, 5.0))]}, s)
    assert j.verdict == ledger.QUALIFIED and "smoother" in j.reason
    j = _judge_r2({"sizes": sizes, "regimes": [_regime([3.0, 2.0], gap=1e-6)]}, s)
    assert j.verdict == ledger.QUALIFIED and "size-extensive" in j.reason
    j = _judge_r2({"sizes": sizes, "regimes": [_regime([3.0, 2.0], slope=1.9)]}, s)
    assert j.verdict == ledger.QUALIFIED and "size-extensive" in j.reason
    assert _judge_r2({"sizes": sizes, "regimes": [_regime([1.0, 0.0])]}, s).verdict == ledger.REFUTED
