"""R10: block-input gradients against the backward recursion, consecutive cosines against closed forms,
and every verdict branch of the judge on hand-made measurements."""

import math

import pytest
import torch

import depthscope.ledger as ledger
from depthscope.ledger.claims.r10_fighting import (
    _block_input_gradients,
    _consecutive_cosines,
    _gradient_alignment,
    _judge_r10,
)
from depthscope.zoo import create_model


def _mlp(depth=3, width=6, alpha=1.0, seed=0):
    torch.manual_seed(seed)
    return create_model("resnet_mlp", depth=depth, width=width, alpha=alpha, in_dim=5, out_dim=3)


def test_block_input_gradients_match_the_backward_recursion_through_each_block():
    model = _mlp(alpha=2.0)
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 1])
    grads = _block_input_gradients(model, x, y)
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
    batch = _block_input_gradients(model, x, y)
    single = _block_input_gradients(model, x[1:2], y[1:2])
    for gb, gs in zip(batch, single):
        assert torch.allclose(gb[1:2], gs, atol=1e-6)


def test_consecutive_cosines_closed_form_and_orthogonal_prediction():
    a = 2.0
    upper = torch.tensor([[1.0, 0.0]])
    lower = torch.tensor([[1.0, a]])  # g_k = g_{k+1} + a e2, branch term orthogonal to g
    cos, ratio, valid = _consecutive_cosines([lower, upper])
    assert cos.item() == pytest.approx(1 / math.sqrt(1 + a**2))
    assert ratio.item() == pytest.approx(a)
    assert bool(valid.item())
    against = torch.tensor([[-1.0, 0.5]])  # branch term -2 e1 + 0.5 e2 points against g
    cos, _, _ = _consecutive_cosines([against, upper])
    assert cos.item() < 0


def test_consecutive_cosines_leave_out_zero_gradients():
    g = [torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 0.0]])]
    _, ratio, valid = _consecutive_cosines(g)
    assert valid.tolist() == [[True, False]]
    assert torch.isfinite(ratio).all()


def test_gradient_alignment_is_near_one_for_tiny_alpha_and_drops_for_large_alpha():
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    small = _gradient_alignment(_mlp(depth=4, width=16, alpha=1e-3), x, y)
    large = _gradient_alignment(_mlp(depth=4, width=16, alpha=20.0), x, y)
    assert small["mean_cosine"] > 0.999 and small["negative_fraction"] == 0.0
    assert large["mean_cosine"] < 0.5
    assert len(small["per_pair"]) == 4


def _r10_measured(init_cos, trained_cos, neg):
    alphas = [0.1, 8.0]
    rec = lambda c: {  # noqa: E731
        "mean_cosine": [0.99, c],
        "negative_fraction": [0.0, neg],
        "orthogonal_prediction": [0.99, 0.12],
    }
    return {"alphas": alphas, "init": rec(init_cos), "trained": rec(trained_cos)}


def test_judge_r10_branches_and_uses_the_state_with_the_lowest_cosine():
    s = {}
    j = _judge_r10(_r10_measured(0.1, -0.3, 0.6), s)
    assert j.verdict == ledger.CONFIRMED and "trained" in j.reason
    assert _judge_r10(_r10_measured(0.12, 0.2, 0.15), s).verdict == ledger.QUALIFIED
    assert _judge_r10(_r10_measured(0.12, 0.2, 0.01), s).verdict == ledger.REFUTED
    assert _judge_r10(_r10_measured(0.6, 0.7, 0.2), s).verdict == ledger.REFUTED


def test_gradient_alignment_refuses_overflowed_gradients():
    from depthscope import NonFiniteError

    model = _mlp(depth=40, width=16, alpha=1e3)
    with pytest.raises(NonFiniteError, match="overflowed"):
        _gradient_alignment(model, torch.randn(4, 5), torch.tensor([0, 1, 2, 0]))
