"""Claims R1, R3, R10 (depthscope.ledger.claims.training): helpers against closed forms and
autograd, and every verdict branch of the judges on hand-made measurements."""

import math

import numpy as np
import pytest
import torch

import depthscope.ledger as ledger
from depthscope.ledger.claims import training as tr
from depthscope.zoo import create_model
from depthscope.zoo.mlp import ResidualBlock


# --- shared -----------------------------------------------------------------------------------


def test_row_cosine_parallel_orthogonal_opposite_and_zero_rows():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(tr._row_cosine(a, b), torch.tensor([1.0, 0.0, -1.0, 0.0]))


# --- R1 ---------------------------------------------------------------------------------------


def _r1_setting(**kw):
    setting = dict(ledger.get_experiment("R1").setting("tiny"))
    setting.update(kw)
    return setting


def test_denoising_pairs_clean_target_error_is_minus_the_noise():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2000, 16, generator=g)
    x, t = tr._denoising_pairs(clean, _r1_setting(noise=0.3), g)
    assert torch.equal(t, clean)
    noise = x - clean
    assert abs(noise.std().item() - 0.3) < 0.01
    assert torch.allclose(t - x, -noise)


def test_denoising_pairs_independent_target_error_is_unpredictable_from_the_input_noise():
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(4000, 16, generator=g)
    x, t = tr._denoising_pairs(clean, _r1_setting(noise=0.3, target="independent"), g)
    err, noise = (t - x).flatten(), (x - clean).flatten()
    assert abs(err.std().item() - 0.3) < 0.01
    assert abs(torch.corrcoef(torch.stack([err, noise]))[0, 1].item()) < 0.02


def test_denoising_pairs_rejects_unknown_target():
    with pytest.raises(ValueError, match="target"):
        tr._denoising_pairs(torch.zeros(2, 2), _r1_setting(target="shuffled"), torch.Generator())


def _linear_block(width: int, scale: float) -> ResidualBlock:
    """A zoo block with F(x) = scale * x on positive inputs (W1 = I, b1 = 0, W2 = scale I)."""
    block = ResidualBlock(width, "relu", 1.0, "gaussian", 1.0, 0.0, alpha=1.0)
    with torch.no_grad():
        block.fc1.weight.copy_(torch.eye(width))
        block.fc1.bias.zero_()
        block.fc2.weight.copy_(scale * torch.eye(width))
    return block


def test_alignment_is_one_when_the_block_is_the_exact_correction():
    x = torch.rand(50, 8) + 0.1  # positive, so relu is the identity
    t = 0.5 * x  # t - x = -0.5 x = F(x) for scale -0.5
    out = tr._alignment(torch.nn.ModuleList([_linear_block(8, -0.5)]), x, t)
    assert out["end_to_end"] == pytest.approx(1.0, abs=1e-6)
    assert out["per_block"] == [pytest.approx(1.0, abs=1e-6)]
    assert out["mse"] == pytest.approx(0.0, abs=1e-10)
    assert out["mse_identity"] == pytest.approx(float(((0.5 * x) ** 2).sum(1).mean()), rel=1e-6)


def test_alignment_is_minus_one_for_a_correction_the_wrong_way():
    x = torch.rand(20, 4) + 0.1
    out = tr._alignment(torch.nn.ModuleList([_linear_block(4, 0.5)]), x, 0.5 * x)
    assert out["end_to_end"] == pytest.approx(-1.0, abs=1e-6)


def test_alignment_per_block_uses_each_blocks_own_input():
    # two blocks each halving x: x1 = x/2, x2 = x/4; target 0 -> block k's error is -x_k, F_k = -x_k/2
    x = torch.rand(10, 4) + 0.1
    blocks = torch.nn.ModuleList([_linear_block(4, -0.5), _linear_block(4, -0.5)])
    out = tr._alignment(blocks, x, torch.zeros_like(x))
    assert out["per_block"] == [pytest.approx(1.0, abs=1e-6)] * 2
    assert out["mse"] == pytest.approx(float(((x / 4) ** 2).sum(1).mean()), rel=1e-6)


def test_residual_stack_uses_zoo_blocks_scaled_by_one_over_sqrt_depth():
    stack = tr._residual_stack(5, 4)
    assert len(stack) == 4 and all(isinstance(b, ResidualBlock) for b in stack)
    assert all(float(b.alpha) == pytest.approx(0.5) for b in stack)
    assert float(tr._residual_stack(5, 1)[0].alpha) == 1.0


def test_fit_stack_lowers_the_loss_and_is_deterministic():
    x = torch.rand(64, 6)
    t = 0.8 * x
    setting = _r1_setting(steps=60, lr=1e-2, batch=16)

    def fit():
        torch.manual_seed(0)
        blocks = tr._residual_stack(6, 1)
        return tr._fit_stack(blocks, x, t, setting, torch.Generator().manual_seed(0))

    first, second = fit(), fit()
    assert first == second
    assert np.mean(first[-10:]) < 0.5 * np.mean(first[:10])


def test_r1_measure_untrained_cosine_near_zero_trained_clearly_positive():
    m = tr._measure_r1(_r1_setting(depths=[1]), seed=0)
    run = m["runs"][0]
    assert abs(run["before"]["end_to_end"]) < 0.05
    assert run["after"]["end_to_end"] > run["before"]["end_to_end"] + 0.1
    assert sum(run["after"]["histogram"]) == sum(run["before"]["histogram"]) == m["n_test"]
    # after training the per-example cosines sit in the positive half
    positive = sum(run["after"]["histogram"][tr.R1_HISTOGRAM_BINS // 2 :])
    assert positive > 0.9 * m["n_test"]


def _r1_run(depth, before, after, per_block, mse=1.0):
    return {
        "depth": depth,
        "before": {"end_to_end": before, "per_block": [0.0] * depth},
        "after": {"end_to_end": after, "per_block": per_block, "mse": mse, "mse_identity": 2.0},
    }


def test_judge_r1_branches():
    s = _r1_setting()
    ok = {"runs": [_r1_run(1, 0.0, 0.6, [0.6]), _r1_run(2, 0.0, 0.7, [0.3, 0.5])], "n_test": 10}
    assert tr._judge_r1(ok, s).verdict == ledger.CONFIRMED
    weak = {"runs": [_r1_run(1, 0.0, 0.6, [0.6]), _r1_run(2, 0.0, 0.7, [0.05, 0.5])], "n_test": 10}
    j = tr._judge_r1(weak, s)
    assert j.verdict == ledger.QUALIFIED and "block 1 of 2: +0.050" in j.reason
    useless = {"runs": [_r1_run(1, 0.0, 0.6, [0.6]), _r1_run(2, 0.0, 0.7, [0.3, 0.5], mse=2.5)], "n_test": 10}
    j = tr._judge_r1(useless, s)
    assert j.verdict == ledger.QUALIFIED and "depth 2: 2.5 vs 2" in j.reason
    bad = {"runs": [_r1_run(1, 0.0, 0.1, [0.1]), _r1_run(2, 0.0, 0.7, [0.4, 0.5])], "n_test": 10}
    j = tr._judge_r1(bad, s)
    assert j.verdict == ledger.REFUTED and "+0.100" in j.reason


# --- R3 ---------------------------------------------------------------------------------------


def test_smoothed_matches_a_trailing_mean_loop():
    rng = np.random.default_rng(0)
    x = rng.random(37).tolist()
    expected = [np.mean(x[max(0, i + 1 - 5) : i + 1]) for i in range(len(x))]
    np.testing.assert_allclose(tr._smoothed(x, 5), expected, rtol=1e-12)
    assert tr._smoothed([], 5).size == 0


def test_steps_to_threshold_is_one_based_and_none_when_never_reached():
    losses = [3.0, 2.0, 1.0, 0.4, 0.3]
    assert tr._steps_to_threshold(losses, 0.45, window=1) == 4
    assert tr._steps_to_threshold(losses, 3.0, window=1) == 1
    assert tr._steps_to_threshold(losses, 0.1, window=1) is None
    # with a window of 2 the smoothed values are 3, 2.5, 1.5, 0.7, 0.35
    assert tr._steps_to_threshold(losses, 0.5, window=2) == 5


def test_degrades_needs_both_margins():
    assert tr._degrades(2.0, 0.5)
    assert not tr._degrades(0.5, 0.5)
    # 25% worse but under the absolute margin: seed noise near zero loss
    assert not tr._degrades(0.0125, 0.01)
    rel = 1 + tr.R3_RELATIVE_MARGIN
    assert not tr._degrades(0.4 * rel + tr.R3_ABSOLUTE_MARGIN - 1e-9, 0.4)
    assert tr._degrades(0.4 * rel + tr.R3_ABSOLUTE_MARGIN + 1e-9, 0.4)


def test_skip_scaled_block_is_the_block_at_one_and_the_branch_at_zero():
    torch.manual_seed(0)
    block = ResidualBlock(8, "relu", 1.0, "gaussian", math.sqrt(2), 0.0, 0.3)
    x = torch.randn(5, 8)
    assert torch.allclose(tr._SkipScaled(block, 1.0)(x), block(x))
    assert torch.allclose(tr._SkipScaled(block, 0.0)(x), 0.3 * block.branch(x))


def test_build_arm_uses_the_zoo_models_and_removes_identity_paths_only_when_asked():
    data = ledger.digits().subset(10, 5)
    setting = dict(ledger.get_experiment("R3").setting("tiny"))
    plain = tr._build_arm("plain", 3, setting, data)
    res = tr._build_arm("residual", 3, setting, data)
    assert len(plain.blocks) == len(res.blocks) == 3
    assert float(res.blocks[0].alpha) == pytest.approx(1 / math.sqrt(3))
    assert not isinstance(res.blocks[0], tr._SkipScaled)
    cut = tr._build_arm("residual", 3, {**setting, "skip": 0.0}, data)
    assert all(isinstance(b, tr._SkipScaled) and b.skip == 0.0 for b in cut.blocks)
    rezero = tr._build_arm("rezero", 3, setting, data)
    assert rezero.blocks[0].alpha.detach().item() == 0.0 and rezero.blocks[0].alpha.requires_grad


def test_median_steps_counts_unreached_runs_as_infinite():
    assert tr._median_steps([10, 20, 30]) == 20
    assert tr._median_steps([10, None, None]) == math.inf


def test_convergence_says_whether_rezero_is_strictly_first():
    arms = {
        "plain": {"steps_to_threshold": [[[None]], [[None], [None]]]},
        "residual": {"steps_to_threshold": [[[5]], [[40], [90]]]},
        "rezero": {"steps_to_threshold": [[[5]], [[50], [60]]]},
    }
    conv = tr._convergence(arms, {"depths": [2, 16], "loss_thresholds": [0.5, 0.1]})
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
    assert tr._judge_r3(_r3_measured([0.1, 0.5, 2.0], [0.1, 0.1, 0.1]), s).verdict == ledger.CONFIRMED
    j = tr._judge_r3(_r3_measured([0.1, 0.1, 2.0], [0.1, 0.1, 0.1]), s)
    assert j.verdict == ledger.QUALIFIED and "depth [2]" in j.reason
    j = tr._judge_r3(_r3_measured([0.1, 0.5, 2.0], [0.1, 0.1, 0.5]), s)
    assert j.verdict == ledger.QUALIFIED and "residual nets of depth [3] degrade" in j.reason
    assert tr._judge_r3(_r3_measured([0.1, 0.5, 2.0], [0.1, 0.1, 1.5]), s).verdict == ledger.REFUTED
    j = tr._judge_r3(_r3_measured([0.1, 0.1, 0.11], [0.1, 0.1, 0.1]), s)
    assert j.verdict == ledger.REFUTED and "no degradation" in j.reason


# --- R10 --------------------------------------------------------------------------------------


def _mlp(depth=3, width=6, alpha=1.0, seed=0):
    torch.manual_seed(seed)
    return create_model("resnet_mlp", depth=depth, width=width, alpha=alpha, in_dim=5, out_dim=3)


def test_block_input_gradients_match_the_backward_recursion_through_each_block():
    model = _mlp(alpha=2.0)
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 1])
    grads = tr._block_input_gradients(model, x, y)
    assert len(grads) == len(model.blocks) + 1
    h = model.stem(x)
    for k, block in enumerate(model.blocks):
        # g_k = (I + alpha J_F)^T g_{k+1}: the vector-Jacobian product through block k
        _, vjp = torch.autograd.functional.vjp(block, h.detach(), grads[k + 1])
        assert torch.allclose(vjp, grads[k], atol=1e-5, rtol=1e-4)
        h = block(h)


def test_block_input_gradients_rows_are_per_example_gradients():
    model = _mlp()
    x, y = torch.randn(3, 5), torch.tensor([2, 0, 1])
    batch = tr._block_input_gradients(model, x, y)
    single = tr._block_input_gradients(model, x[1:2], y[1:2])
    for gb, gs in zip(batch, single):
        assert torch.allclose(gb[1:2], gs, atol=1e-6)


def test_consecutive_cosines_closed_form_and_orthogonal_prediction():
    a = 2.0
    upper = torch.tensor([[1.0, 0.0]])
    lower = torch.tensor([[1.0, a]])  # g_k = g_{k+1} + a e2, branch term orthogonal to g
    cos, ratio, valid = tr._consecutive_cosines([lower, upper])
    assert cos.item() == pytest.approx(1 / math.sqrt(1 + a**2))
    assert ratio.item() == pytest.approx(a)
    assert bool(valid.item())
    against = torch.tensor([[-1.0, 0.5]])  # branch term -2 e1 + 0.5 e2 points against g
    cos, _, _ = tr._consecutive_cosines([against, upper])
    assert cos.item() < 0


def test_consecutive_cosines_leave_out_zero_gradients():
    g = [torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 0.0]])]
    _, ratio, valid = tr._consecutive_cosines(g)
    assert valid.tolist() == [[True, False]]
    assert torch.isfinite(ratio).all()


def test_gradient_alignment_is_near_one_for_tiny_alpha_and_drops_for_large_alpha():
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    small = tr._gradient_alignment(_mlp(depth=4, width=16, alpha=1e-3), x, y)
    large = tr._gradient_alignment(_mlp(depth=4, width=16, alpha=20.0), x, y)
    assert small["mean_cosine"] > 0.999 and small["negative_fraction"] == 0.0
    assert large["mean_cosine"] < 0.5
    assert len(small["per_pair"]) == 4


def _r10_measured(init_cos, trained_cos, neg):
    alphas = [0.1, 8.0]
    rec = lambda c: {  # noqa: E731
        "mean_cosine": [0.99, c], "negative_fraction": [0.0, neg], "orthogonal_prediction": [0.99, 0.12]
    }
    return {"alphas": alphas, "init": rec(init_cos), "trained": rec(trained_cos)}


def test_judge_r10_branches_and_uses_the_state_with_the_lowest_cosine():
    s = {}
    j = tr._judge_r10(_r10_measured(0.1, -0.3, 0.6), s)
    assert j.verdict == ledger.CONFIRMED and "trained" in j.reason
    assert tr._judge_r10(_r10_measured(0.12, 0.2, 0.15), s).verdict == ledger.QUALIFIED
    assert tr._judge_r10(_r10_measured(0.12, 0.2, 0.01), s).verdict == ledger.REFUTED
    assert tr._judge_r10(_r10_measured(0.6, 0.7, 0.2), s).verdict == ledger.REFUTED


def test_gradient_alignment_refuses_overflowed_gradients():
    from depthscope import NonFiniteError

    model = _mlp(depth=40, width=16, alpha=1e3)
    with pytest.raises(NonFiniteError, match="overflowed"):
        tr._gradient_alignment(model, torch.randn(4, 5), torch.tensor([0, 1, 2, 0]))


def test_curve_averages_seeds_and_thins_to_the_stride():
    runs = [{"losses": [1.0] * 10}, {"losses": [3.0] * 10}, {"losses": []}]
    assert tr._curve(runs, steps=10) == [2.0] * 10  # stride 1 below R3_CURVE_POINTS steps
    long_runs = [{"losses": list(range(1000))}]
    assert len(tr._curve(long_runs, steps=1000)) == tr.R3_CURVE_POINTS
    assert tr._curve([{"losses": []}], steps=5) == []


def test_plot_r3_draws_diverged_runs_without_warnings():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = {
        "depths": [2, 4],
        "curve_steps": [1, 2, 3],
        "arms": {
            "plain": {
                "final_loss": [[0.5], [math.inf]], "mean_final_loss": [0.5, math.inf], "curve": [[1, 0.8, 0.6], []]
            },
            "residual": {
                "final_loss": [[0.5], [0.4]], "mean_final_loss": [0.5, 0.4], "curve": [[1, 0.8, 0.6], [1, 0.7, 0.5]]
            },
        },
    }
    fig = tr._plot_r3(m, {"loss_thresholds": [0.5]})
    assert len(fig.axes) == 2
    plt.close(fig)
