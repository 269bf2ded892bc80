"""DeepNorm: the paper's constants for N layers, and the conversion of zoo and BERT Post-LN blocks."""

from __future__ import annotations

import math

import pytest
import torch
from tests.doctor.treatment_cases import case_for, tiny_bert, zoo

import depthscope as ds
from depthscope.doctor import get_treatment
from depthscope.doctor._blocks import DeepNormSum
from depthscope.doctor.treatments.deepnorm import deepnorm_constants, encoder_decoder_constants
from depthscope.zoo.transformer import DeepNormBlock, deepnorm_alpha, deepnorm_beta

DEEPNORM = get_treatment("deepnorm")
# Xavier-normal std estimated from 256 x 64 = 16384 entries: relative standard error ~0.55%.
STD_RTOL = 0.03


@pytest.mark.parametrize("n", [1, 6, 24, 48, 1000])
def test_constants_for_n_layers(n: int) -> None:
    alpha, beta = deepnorm_constants(n)
    assert math.isclose(alpha, (2 * n) ** 0.25) and math.isclose(beta, (8 * n) ** -0.25)
    assert math.isclose(alpha, deepnorm_alpha(n)) and math.isclose(beta, deepnorm_beta(n))  # the zoo's builder


def test_encoder_decoder_constants_follow_the_table() -> None:
    c = encoder_decoder_constants(18, 18)  # the paper's 18-18 configuration
    assert math.isclose(c["alpha_encoder"], 0.81 * (18**5) ** (1 / 16))
    assert math.isclose(c["beta_encoder"], 0.87 * (18**5) ** (-1 / 16))
    assert math.isclose(c["alpha_decoder"], 54**0.25) and math.isclose(c["beta_decoder"], 216**-0.25)
    with pytest.raises(ValueError):
        deepnorm_constants(0)


def test_zoo_blocks_become_deepnorm_blocks_with_beta_init() -> None:
    model, x = zoo("transformer_postln", depth=3, d_model=64, n_heads=4, d_ff=256, seq_len=4, vocab=7)
    case = case_for(model, x, ("postln-contraction",))
    treated = DEEPNORM.apply(model, case)
    alpha, beta = deepnorm_constants(3)
    assert DEEPNORM.constants(case) == {"N": 3.0, "alpha": alpha, "beta": beta}
    for old, new in zip(model.blocks, treated.blocks):
        assert isinstance(new, DeepNormBlock) and math.isclose(float(new.alpha), alpha, rel_tol=1e-6)
        assert torch.equal(new.ln1.weight, old.ln1.weight) and torch.equal(new.attn.mask, old.attn.mask)
        fc1 = new.ffn.fc1.weight.detach()
        assert math.isclose(float(fc1.std()), beta * math.sqrt(2 / (64 + 256)), rel_tol=STD_RTOL)


def test_bert_layers_get_the_deepnorm_sum() -> None:
    model, ids = tiny_bert(2)
    case = case_for(model, ids, ("postln-contraction",))
    treated = DEEPNORM.apply(model, case).eval()
    alpha, _ = deepnorm_constants(2)
    layer = treated.encoder.layer[0]
    assert isinstance(layer.attention.output, DeepNormSum) and isinstance(layer.output, DeepNormSum)
    x = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        att = layer.attention.output
        h = att.LayerNorm(att.dense(layer.attention.self(x)[0]) + alpha * x)
        out = layer.output
        expected = out.LayerNorm(out.dense(layer.intermediate(h)) + alpha * h)
        torch.testing.assert_close(layer(x), expected)
    assert treated(ids).last_hidden_state.shape == (2, 8, 16)
    assert DEEPNORM.kept(case.report, ds.probe(treated, ids))  # the treated BERT is still probed block by block
