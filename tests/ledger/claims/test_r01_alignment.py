"""R1: the denoising pairs, the alignment cosines and the stack's fit against closed forms, and every
verdict branch of the judge on hand-made measurements."""

import numpy as np
import pytest
import torch
from tests.ledger.claims.helpers import tiny_setting

import depthscope.ledger as ledger
from depthscope.ledger.claims.r01_alignment import (
    R1_HISTOGRAM_BINS,
    _alignment,
    _denoising_pairs,
    _fit_stack,
    _judge_r1,
    _measure_r1,
    _residual_stack,
)
from depthscope.zoo.mlp import ResidualBlock


def test_denoising_pairs_clean_target_error_is_minus_the_noise():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2000, 16, generator=g)
    x, t = _denoising_pairs(clean, tiny_setting("R1", noise=0.3), g)
    assert torch.equal(t, clean)
    noise = x - clean
    assert abs(noise.std().item() - 0.3) < 0.01
    assert torch.allclose(t - x, -noise)


def test_denoising_pairs_independent_target_error_is_unpredictable_from_the_input_noise():
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(4000, 16, generator=g)
    x, t = _denoising_pairs(clean, tiny_setting("R1", noise=0.3, target="independent"), g)
    err, noise = (t - x).flatten(), (x - clean).flatten()
    assert abs(err.std().item() - 0.3) < 0.01
    assert abs(torch.corrcoef(torch.stack([err, noise]))[0, 1].item()) < 0.02


def test_denoising_pairs_rejects_unknown_target():
    with pytest.raises(ValueError, match="target"):
        _denoising_pairs(torch.zeros(2, 2), tiny_setting("R1", target="shuffled"), torch.Generator())


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
    out = _alignment(torch.nn.ModuleList([_linear_block(8, -0.5)]), x, t)
    assert out["end_to_end"] == pytest.approx(1.0, abs=1e-6)
    assert out["per_block"] == [pytest.approx(1.0, abs=1e-6)]
    assert out["mse"] == pytest.approx(0.0, abs=1e-10)
    assert out["mse_identity"] == pytest.approx(float(((0.5 * x) ** 2).sum(1).mean()), rel=1e-6)


def test_alignment_is_minus_one_for_a_correction_the_wrong_way():
    x = torch.rand(20, 4) + 0.1
    out = _alignment(torch.nn.ModuleList([_linear_block(4, 0.5)]), x, 0.5 * x)
    assert out["end_to_end"] == pytest.approx(-1.0, abs=1e-6)


def test_alignment_per_block_uses_each_blocks_own_input():
    # two blocks each halving x: x1 = x/2, x2 = x/4; target 0 -> block k's error is -x_k, F_k = -x_k/2
    x = torch.rand(10, 4) + 0.1
    blocks = torch.nn.ModuleList([_linear_block(4, -0.5), _linear_block(4, -0.5)])
    out = _alignment(blocks, x, torch.zeros_like(x))
    assert out["per_block"] == [pytest.approx(1.0, abs=1e-6)] * 2
    assert out["mse"] == pytest.approx(float(((x / 4) ** 2).sum(1).mean()), rel=1e-6)


def test_residual_stack_uses_zoo_blocks_scaled_by_one_over_sqrt_depth():
    stack = _residual_stack(5, 4)
    assert len(stack) == 4 and all(isinstance(b, ResidualBlock) for b in stack)
    assert all(float(b.alpha) == pytest.approx(0.5) for b in stack)
    assert float(_residual_stack(5, 1)[0].alpha) == 1.0


def test_fit_stack_lowers_the_loss_and_is_deterministic():
    x = torch.rand(64, 6)
    t = 0.8 * x
    setting = tiny_setting("R1", steps=60, lr=1e-2, batch=16)

    def fit():
        torch.manual_seed(0)
        blocks = _residual_stack(6, 1)
        return _fit_stack(blocks, x, t, setting, torch.Generator().manual_seed(0))

    first, second = fit(), fit()
    assert first == second
    assert np.mean(first[-10:]) < 0.5 * np.mean(first[:10])


def test_r1_measure_untrained_cosine_near_zero_trained_clearly_positive():
    m = _measure_r1(tiny_setting("R1", depths=[1]), seed=0)
    run = m["runs"][0]
    assert abs(run["before"]["end_to_end"]) < 0.05
    assert run["after"]["end_to_end"] > run["before"]["end_to_end"] + 0.1
    assert sum(run["after"]["histogram"]) == sum(run["before"]["histogram"]) == m["n_test"]
    # after training the per-example cosines sit in the positive half
    positive = sum(run["after"]["histogram"][R1_HISTOGRAM_BINS // 2 :])
    assert positive > 0.9 * m["n_test"]


def _r1_run(depth, before, after, per_block, mse=1.0):
    return {
        "depth": depth,
        "before": {"end_to_end": before, "per_block": [0.0] * depth},
        "after": {"end_to_end": after, "per_block": per_block, "mse": mse, "mse_identity": 2.0},
    }


def test_judge_r1_branches():
    s = tiny_setting("R1")
    ok = {"runs": [_r1_run(1, 0.0, 0.6, [0.6]), _r1_run(2, 0.0, 0.7, [0.3, 0.5])], "n_test": 10}
    assert _judge_r1(ok, s).verdict == ledger.CONFIRMED
    weak = {"runs": [_r1_run(1, 0.0, 0.6, [0.6]), _r1_run(2, 0.0, 0.7, [0.05, 0.5])], "n_test": 10}
    j = _judge_r1(weak, s)
    assert j.verdict == ledger.QUALIFIED and "block 1 of 2: +0.050" in j.reason
    useless = {"runs": [_r1_run(1, 0.0, 0.6, [0.6]), _r1_run(2, 0.0, 0.7, [0.3, 0.5], mse=2.5)], "n_test": 10}
    j = _judge_r1(useless, s)
    assert j.verdict == ledger.QUALIFIED and "depth 2: 2.5 vs 2" in j.reason
    bad = {"runs": [_r1_run(1, 0.0, 0.1, [0.1]), _r1_run(2, 0.0, 0.7, [0.4, 0.5])], "n_test": 10}
    j = _judge_r1(bad, s)
    assert j.verdict == ledger.REFUTED and "+0.100" in j.reason
