"""R3: loss smoothing, thresholds, the degradation margins, the arms built from the zoo, the convergence
summary, the judge's verdict branches and the plot on diverged runs."""

import math

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims.r03_degradation import (
    R3_ABSOLUTE_MARGIN,
    R3_CURVE_POINTS,
    R3_RELATIVE_MARGIN,
    _build_arm,
    _convergence,
    _curve,
    _degrades,
    _judge_r3,
    _median_steps,
    _plot_r3,
    _SkipScaled,
    _smoothed,
    _steps_to_threshold,
)
from depthscope.zoo.mlp import ResidualBlock


def test_smoothed_matches_a_trailing_mean_loop():
    rng = np.random.default_rng(0)
    x = rng.random(37).tolist()
    expected = [np.mean(x[max(0, i + 1 - 5) : i + 1]) for i in range(len(x))]
    np.testing.assert_allclose(_smoothed(x, 5), expected, rtol=1e-12)
    assert _smoothed([], 5).size == 0


def test_steps_to_threshold_is_one_based_and_none_when_never_reached():
    losses = [3.0, 2.0, 1.0, 0.4, 0.3]
    assert _steps_to_threshold(losses, 0.45, window=1) == 4
    assert _steps_to_threshold(losses, 3.0, window=1) == 1
    assert _steps_to_threshold(losses, 0.1, window=1) is None
    # with a window of 2 the smoothed values are 3, 2.5, 1.5, 0.7, 0.35
    assert _steps_to_threshold(losses, 0.5, window=2) == 5


def test_degrades_needs_both_margins():
    assert _degrades(2.0, 0.5)
    assert not _degrades(0.5, 0.5)
    # 25% worse but under the absolute margin: seed noise near zero loss
    assert not _degrades(0.0125, 0.01)
    rel = 1 + R3_RELATIVE_MARGIN
    assert not _degrades(0.4 * rel + R3_ABSOLUTE_MARGIN - 1e-9, 0.4)
    assert _degrades(0.4 * rel + R3_ABSOLUTE_MARGIN + 1e-9, 0.4)


def test_skip_scaled_block_is_the_block_at_one_and_the_branch_at_zero():
    torch.manual_seed(0)
    block = ResidualBlock(8, "relu", 1.0, "gaussian", math.sqrt(2), 0.0, 0.3)
    x = torch.randn(5, 8)
    assert torch.allclose(_SkipScaled(block, 1.0)(x), block(x))
    assert torch.allclose(_SkipScaled(block, 0.0)(x), 0.3 * block.branch(x))


def test_build_arm_uses_the_zoo_models_and_removes_identity_paths_only_when_asked():
    data = ledger.digits().subset(10, 5)
    setting = tiny_setting("R3")
    plain = _build_arm("plain", 3, setting, data)
    res = _build_arm("residual", 3, setting, data)
    assert len(plain.blocks) == len(res.blocks) == 3
    assert float(res.blocks[0].alpha) == pytest.approx(1 / math.sqrt(3))
    assert not isinstance(res.blocks[0], _SkipScaled)
    cut = _build_arm("residual", 3, {**setting, "skip": 0.0}, data)
    assert all(isinstance(b, _SkipScaled) and b.skip == 0.0 for b in cut.blocks)
    rezero = _build_arm("rezero", 3, setting, data)
    assert rezero.blocks[0].alpha.detach().item() == 0.0 and rezero.blocks[0].alpha.requires_grad


def test_median_steps_counts_unreached_runs_as_infinite():
    assert _median_steps([10, 20, 30]) == 20
    assert _median_steps([10, None, None]) == math.inf


def test_convergence_says_whether_rezero_is_strictly_first():
    arms = {
        "plain": {"steps_to_threshold": [[[None]], [[None], [None]]]},
        "residual": {"steps_to_threshold": [[[5]], [[40], [90]]]},
        "rezero": {"steps_to_threshold": [[[5]], [[50], [60]]]},
    }
    conv = _convergence(arms, {"depths": [2, 16], "loss_thresholds": [0.5, 0.1]})
    assert [c["rezero_fastest"] for c in conv] == [False, True]
    assert conv[1]["median_steps"] == {"plain": math.inf, "residual": 90.0, "rezero": 60.0}


def _r3_measured(plain, residual):
    conv = [{"depth": 3, "threshold": 0.5, "median_steps": {"plain": math.inf, "residual": 5.0}}]
    return {
        "depths": [1, 2, 3],
        "arms": {"plain": {"mean_final_loss": plain}, "residual": {"mean_final_loss": residual}},
        "convergence": conv,
    }


def test_judge_r3_branches():
    s = {"steps": 100}
    assert _judge_r3(_r3_measured([0.1, 0.5, 2.0], [0.1, 0.1, 0.1]), s).verdict == ledger.CONFIRMED
    j = _judge_r3(_r3_measured([0.1, 0.1, 2.0], [0.1, 0.1, 0.1]), s)
    assert j.verdict == ledger.QUALIFIED and "depth [2]" in j.reason
    j = _judge_r3(_r3_measured([0.1, 0.5, 2.0], [0.1, 0.1, 0.5]), s)
    assert j.verdict == ledger.QUALIFIED and "residual nets of depth [3] degrade" in j.reason
    assert _judge_r3(_r3_measured([0.1, 0.5, 2.0], [0.1, 0.1, 1.5]), s).verdict == ledger.REFUTED
    j = _judge_r3(_r3_measured([0.1, 0.1, 0.11], [0.1, 0.1, 0.1]), s)
    assert j.verdict == ledger.REFUTED and "no degradation" in j.reason


def test_curve_averages_seeds_and_thins_to_the_stride():
    runs = [{"losses": [1.0] * 10}, {"losses": [3.0] * 10}, {"losses": []}]
    assert _curve(runs, steps=10) == [2.0] * 10  # stride 1 below R3_CURVE_POINTS steps
    long_runs = [{"losses": list(range(1000))}]
    assert len(_curve(long_runs, steps=1000)) == R3_CURVE_POINTS
    assert _curve([{"losses": []}], steps=5) == []


def test_plot_r3_draws_diverged_runs_without_warnings():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = {
        "depths": [2, 4],
        "curve_steps": [1, 2, 3],
        "arms": {
            "plain": {
                "final_loss": [[0.5], [math.inf]],
                "mean_final_loss": [0.5, math.inf],
                "curve": [[1, 0.8, 0.6], []],
            },
            "residual": {
                "final_loss": [[0.5], [0.4]],
                "mean_final_loss": [0.5, 0.4],
                "curve": [[1, 0.8, 0.6], [1, 0.7, 0.5]],
            },
        },
    }
    fig = _plot_r3(m, {"loss_thresholds": [0.5]})
    assert len(fig.axes) == 2
    plt.close(fig)
