"""Post-LN -> Pre-LN: the LayerNorms move to the branch inputs, a final norm joins the head."""

from __future__ import annotations

import math

import torch
from tests.doctor.treatment_cases import case_for, tiny_bert, zoo
from torch import nn

import depthscope as ds
from depthscope.doctor import get_treatment
from depthscope.doctor._blocks import PreNormInput, ResidualSum
from depthscope.doctor.treatments.preln import residual_scale
from depthscope.zoo.transformer import PreLNBlock

PRE_LN = get_treatment("pre-ln")


def test_residual_scale_is_one_over_sqrt_2n() -> None:
    assert math.isclose(residual_scale(8), 0.25) and math.isclose(residual_scale(48), 1 / math.sqrt(96))


def test_zoo_blocks_become_preln_blocks_and_the_head_gets_a_norm() -> None:
    model, x = zoo("transformer_postln", depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11)
    treated = PRE_LN.apply(model, case_for(model, x, ("postln-contraction",)))
    for old, new in zip(model.blocks, treated.blocks):
        assert isinstance(new, PreLNBlock)
        assert torch.equal(new.ln2.weight, old.ln2.weight) and torch.equal(new.attn.q.weight, old.attn.q.weight)
        torch.testing.assert_close(new.ffn.fc2.weight, old.ffn.fc2.weight * 0.5, rtol=0, atol=0)
    assert isinstance(treated.head[0], nn.LayerNorm) and len(treated.head) == len(model.head) + 1
    assert treated(x).shape == model(x).shape


def test_bert_layers_compute_x_plus_branch_of_normalised_x() -> None:
    model, ids = tiny_bert(2)
    original = model.encoder.layer[0]
    case = case_for(model, ids, ("postln-contraction",))
    treated = PRE_LN.apply(model, case).eval()
    layer = treated.encoder.layer[0]
    assert isinstance(layer.attention.self, PreNormInput) and isinstance(layer.output, ResidualSum)
    assert torch.equal(layer.attention.self.norm.weight, original.attention.output.LayerNorm.weight)
    x = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = layer.attention.self.inner(layer.attention.self.norm(x))[0]
        x1 = x + layer.attention.output.dense(a)
        x2 = x1 + layer.output.dense(layer.intermediate.inner(layer.intermediate.norm(x1)))
        torch.testing.assert_close(layer(x), x2)
    assert treated(ids).last_hidden_state.shape == (2, 8, 16)
    assert PRE_LN.kept(case.report, ds.probe(treated, ids))  # the treated BERT is still probed block by block


def test_blocked_without_postln_blocks() -> None:
    case = case_for(
        *zoo("transformer_preln", depth=2, d_model=16, n_heads=2, d_ff=32, seq_len=8, vocab=11), ("vanishing",)
    )
    assert "no Post-LN" in PRE_LN.blocked(case) and PRE_LN.applies(case) is None
