"""Transformer family: chain structure, masking, torch.func, ReZero identity, DeepNorm constants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev, jvp, vmap

import depthscope
from depthscope.zoo import transformer as tf

NAMES = ["transformer_preln", "transformer_postln", "transformer_deepnorm", "transformer_rezero"]
TINY = dict(depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=6, vocab=11)
# float64 re-evaluation of the same graph: agreement to a few ulps of the output scale.
F64_TOL = 1e-10


def _build(name: str, seed: int = 0, **kw) -> tf.Transformer:
    torch.manual_seed(seed)
    return depthscope.create_model(name, **{**TINY, **kw})


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_tiny_defaults(name):
    spec = depthscope.model_spec(name)
    assert spec.family == "transformer"
    model = spec.factory(**spec.tiny)
    x = model.example_input(2, torch.Generator().manual_seed(0))
    assert model(x).shape == (2, spec.tiny["seq_len"], spec.tiny["vocab"])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("causal", [True, False])
def test_chain_is_stem_blocks_head_and_composes(name, causal):
    model = _build(name, depth=3, causal=causal)
    x = model.example_input(3, torch.Generator().manual_seed(1))
    assert x.dtype == torch.long and x.shape == (3, TINY["seq_len"])
    chain = depthscope.Chain.from_module(model)
    assert chain.names == ["stem", "blocks.0", "blocks.1", "blocks.2", "head"]
    states = chain.states(x)
    assert states[1].shape == (3, TINY["seq_len"], TINY["d_model"])
    assert all(s.shape == states[1].shape for s in states[1:-1])
    torch.testing.assert_close(states[-1], model(x), rtol=0, atol=0)


def test_only_preln_has_a_final_layernorm():
    has_ln = {n: any(isinstance(m, torch.nn.LayerNorm) for m in _build(n).head) for n in NAMES}
    assert has_ln == {
        "transformer_preln": True,
        "transformer_postln": False,
        "transformer_deepnorm": False,
        "transformer_rezero": False,
    }


@pytest.mark.parametrize("name", NAMES)
def test_attention_never_mixes_the_batch(name):
    model = _build(name, causal=False)
    # ReZero's branches are switched off at init; open them so attention actually acts.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 0:
                p.fill_(1.0)
    x = model.example_input(2, torch.Generator().manual_seed(2))
    x2 = x.clone()
    x2[1] = (x2[1] + 1) % TINY["vocab"]
    y, y2 = model(x), model(x2)
    torch.testing.assert_close(y[0], y2[0], rtol=0, atol=0)
    assert not torch.allclose(y[1], y2[1])


@pytest.mark.parametrize("causal", [True, False])
def test_causal_mask_hides_the_future_only_when_causal(causal):
    model = _build("transformer_preln", causal=causal)
    x = model.example_input(1, torch.Generator().manual_seed(3))
    last = TINY["seq_len"] - 1
    x2 = x.clone()
    x2[0, last] = (x2[0, last] + 1) % TINY["vocab"]
    y, y2 = model(x), model(x2)
    past_unchanged = torch.equal(y[0, :last], y2[0, :last])
    assert past_unchanged == causal
    assert not torch.allclose(y[0, last], y2[0, last])


@pytest.mark.parametrize("name", NAMES)
def test_torch_func_jvp_and_vmap_through_a_block(name):
    model = _build(name).double()
    with torch.no_grad():  # give ReZero non-trivial branches so the check means something
        for p in model.parameters():
            if p.ndim == 0:
                p.fill_(0.5)
    block = model.blocks[0]
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, TINY["seq_len"], TINY["d_model"], generator=g, dtype=torch.float64)
    v = torch.randn(h.shape, generator=g, dtype=torch.float64)
    y, jv = jvp(block, (h,), (v,))
    torch.testing.assert_close(y, block(h), rtol=0, atol=F64_TOL)
    jac = jacrev(block)(h)  # (2, T, D, 2, T, D)
    dense = jac.reshape(h.numel(), h.numel())
    torch.testing.assert_close(jv.reshape(-1), dense @ v.reshape(-1), rtol=0, atol=F64_TOL)
    # vmap over the batch (each example without a batch dim) gives the batched result.
    torch.testing.assert_close(vmap(block)(h), block(h), rtol=0, atol=F64_TOL)
    # The Jacobian is block diagonal across the batch: example 0 never sees example 1.
    assert jac[0, :, :, 1].abs().max() == 0 and jac[1, :, :, 0].abs().max() == 0


@pytest.mark.parametrize("depth", [1, 4])
@pytest.mark.parametrize("causal", [True, False])
def test_rezero_blocks_are_exactly_the_identity_at_init(depth, causal):
    model = _build("transformer_rezero", depth=depth, causal=causal).double()
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(2, TINY["seq_len"], TINY["d_model"], generator=gen, dtype=torch.float64)
    eye = torch.eye(h.numel(), dtype=torch.float64)
    for block in model.blocks:
        jac = jacrev(block)(h).reshape(h.numel(), h.numel())
        torch.testing.assert_close(jac, eye, rtol=0, atol=0)
        assert torch.equal(torch.linalg.svdvals(jac), torch.ones(h.numel(), dtype=torch.float64))
        h = block(h)


@pytest.mark.parametrize("n", [1, 6, 12, 100])
def test_deepnorm_constants_match_the_formulas(n):
    # Wang et al. 2022, encoder-only: alpha = (2N)^(1/4), beta = (8N)^(-1/4).
    assert tf.deepnorm_alpha(n) == pytest.approx(math.pow(2 * n, 0.25), rel=1e-15)
    assert tf.deepnorm_beta(n) == pytest.approx(math.pow(8 * n, -0.25), rel=1e-15)
    assert tf.deepnorm_alpha(n) * tf.deepnorm_beta(n) == pytest.approx(0.5**0.5, rel=1e-15)
    model = _build("transformer_deepnorm", depth=n if n <= 12 else 2)
    expected = tf.deepnorm_alpha(n if n <= 12 else 2)
    assert all(float(b.alpha) == pytest.approx(expected, rel=1e-7) for b in model.blocks)


def test_deepnorm_branch_init_is_scaled_by_beta():
    depth, d = 6, 64
    torch.manual_seed(6)
    model = depthscope.create_model("transformer_deepnorm", depth=depth, d_model=d, n_heads=4, d_ff=128)
    beta = tf.deepnorm_beta(depth)

    def xavier_std(layer):
        return math.sqrt(2.0 / (layer.in_features + layer.out_features))

    # Each weight has >= 4096 entries, so its sample std is within ~1.1% (one sigma) of the truth;
    # 8% is > 7 sigma and still far from the factor beta = 0.6 that the test detects.
    for block in model.blocks:
        a, f = block.attn, block.ffn
        for layer, gain in [(a.q, 1.0), (a.k, 1.0), (a.v, beta), (a.out, beta), (f.fc1, beta), (f.fc2, beta)]:
            ratio = layer.weight.std().item() / (gain * xavier_std(layer))
            assert abs(ratio - 1.0) < 0.08, (layer, ratio)


def _input_gradient_profile(name: str, seed: int, depth: int) -> torch.Tensor:
    """||dLoss/dx_k|| for the block inputs x_1..x_L and the last block output, divided by the last."""
    torch.manual_seed(seed)
    model = depthscope.create_model(
        name, depth=depth, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11, causal=False
    ).double()
    g = torch.Generator().manual_seed(100 + seed)
    x = model.example_input(4, g)
    target = torch.randint(0, 11, (4, 8), generator=g)
    states = depthscope.Chain.from_module(model).states(x)
    hidden = states[1:-1]  # skip the token ids and the logits
    logits = states[-1]
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
    grads = torch.autograd.grad(loss, hidden)
    norms = torch.stack([gr.norm() for gr in grads])
    return norms / norms[-1]


def test_preln_keeps_its_gradient_highway_and_postln_does_less():
    # Measured at init, depth 12, d_model 16, encoder, mean over seeds 0-2 of
    # ||g_k|| / ||g_L|| (g = dLoss/dstate, k = 0 at the embeddings): Pre-LN 4.32 at the input,
    # growing monotonically toward it (g_l = g_{l+1} + ..., claim J4); Post-LN 1.25 at the input,
    # non-monotone with a minimum of 0.44 mid-stack (DeepNorm 0.91-1.09, ReZero exactly 1).
    # The exponential decay toward the input of claim J3 does NOT show in input gradients here, so
    # we assert only the ordering that holds: Pre-LN does not decay, and keeps more than Post-LN.
    seeds, depth = range(3), 12
    pre = torch.stack([_input_gradient_profile("transformer_preln", s, depth) for s in seeds]).mean(0)
    post = torch.stack([_input_gradient_profile("transformer_postln", s, depth) for s in seeds]).mean(0)
    assert pre.shape == (depth + 1,)
    assert (pre >= 1.0).all()  # no decay anywhere toward the input
    assert pre[0] > 2.0 * post[0]
    assert post.min() < 1.0  # Post-LN does lose gradient somewhere in the stack


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_finite_gradient(name):
    model = _build(name)
    x = model.example_input(2, torch.Generator().manual_seed(7))
    model(x).square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        depthscope.create_model("transformer_preln", d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="positive"):
        depthscope.create_model("transformer_postln", depth=0)
